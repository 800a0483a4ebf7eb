"""Who may train a job, and which workers are shutting down.

A job is trained only by the process holding its **lease**: a key with a TTL that the
process renews (the worker's heartbeat); when the process dies the lease expires and
the job counts as orphaned (worker/recovery.py). Taking a lease also takes a
**fencing token**, a per-job counter that grows each time the job changes hands (a
lease taken, an orphan claimed). Every write of a job's state checks, atomically in
Redis, that the writer's token is still the current one (:meth:`Fence.check`), so a
process that was cut off past its lease and comes back writes nothing more: it finds
:class:`Superseded` and stops.
"""

from dataclasses import dataclass
from typing import cast
from uuid import UUID

import redis

from shared.redisdb.lock import ms
from shared.redisdb.store import Lua, RedisStore

_ACQUIRE = """
-- KEYS: lease, fence;  ARGV: holder, ttl ms
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('incr', KEYS[2])
end
return 0
"""


class Superseded(Exception):
    """The job changed hands: this writer's fencing token is no longer the current one."""

    def __init__(self, job_id: UUID, token: int, current: int | None) -> None:
        super().__init__(f"job {job_id}: fencing token {token} superseded by {current}")
        self.job_id, self.token, self.current = job_id, token, current


@dataclass(frozen=True)
class Fence:
    """A holder's fencing token for one job."""

    job_id: UUID
    key: str
    token: int

    def check(self, pipe: redis.client.Pipeline) -> None:
        """Inside a ``WATCH`` transaction, before ``MULTI``: watch the token and raise
        :class:`Superseded` unless it is still ours (a change before ``EXEC`` makes the
        transaction run again, and this check with it)."""
        pipe.watch(self.key)
        raw = pipe.get(self.key)
        current = int(raw) if raw is not None else None
        if current != self.token:
            raise Superseded(self.job_id, self.token, current)

    def verify(self, client: redis.Redis) -> None:
        """The same check outside a transaction: to stop before work that would be
        refused anyway (the write itself is checked atomically later)."""
        raw = client.get(self.key)
        current = int(raw) if raw is not None else None
        if current != self.token:
            raise Superseded(self.job_id, self.token, current)


class Leases(RedisStore):
    _acquire = Lua(_ACQUIRE)

    def acquire(self, job_id: UUID, holder: str, seconds: float) -> Fence | None:
        """Take the lease and the next fencing token, or ``None`` if another holds it."""
        keys = [self.keys.job_lease(job_id), self.keys.job_fence(job_id)]
        token = int(cast(int, self._acquire(keys=keys, args=[holder, ms(seconds)])))
        return Fence(job_id, self.keys.job_fence(job_id), token) if token else None

    def renew(self, job_id: UUID, holder: str, seconds: float) -> bool:
        """Extend the lease if ``holder`` still holds it."""
        return self._tokens.renew(self.keys.job_lease(job_id), holder, seconds)

    def release(self, job_id: UUID, holder: str) -> None:
        self._tokens.release(self.keys.job_lease(job_id), holder)

    def holder(self, job_id: UUID) -> str | None:
        return cast(str | None, self.redis.get(self.keys.job_lease(job_id)))

    def supersede(self, pipe: redis.client.Pipeline, job_id: UUID) -> None:
        """Queue (inside ``MULTI``) a new fencing token: the job is taken from whoever had it."""
        pipe.incr(self.keys.job_fence(job_id))

    # workers announce a warm shutdown so their jobs checkpoint and go back to the queue

    def mark_worker_stopping(self, worker: str, stopping: bool = True) -> None:
        key = self.keys.worker_stopping(worker)
        if stopping:
            self.redis.set(key, "1", ex=600)
        else:
            self.redis.delete(key)

    def worker_stopping(self, worker: str) -> bool:
        return bool(self.redis.exists(self.keys.worker_stopping(worker)))
