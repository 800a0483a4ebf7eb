"""Who may train a job, and which workers are shutting down.

A job is trained only by the process holding its lease: a key with a TTL that the
process renews (worker/jobs.py's heartbeat). When the process dies the lease
expires and the job counts as orphaned (worker/jobs.py ``recover_orphans``).
"""

from typing import cast
from uuid import UUID

import redis

from shared.keys import Keys

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class Leases:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def acquire(self, job_id: UUID, token: str, seconds: float) -> bool:
        return bool(self.redis.set(self.keys.job_lease(job_id), token, nx=True, px=_ms(seconds)))

    def renew(self, job_id: UUID, token: str, seconds: float) -> bool:
        """Extend the lease if ``token`` still holds it."""
        return bool(self.redis.eval(_RENEW, 1, self.keys.job_lease(job_id), token, _ms(seconds)))

    def release(self, job_id: UUID, token: str) -> None:
        self.redis.eval(_RELEASE, 1, self.keys.job_lease(job_id), token)

    def holder(self, job_id: UUID) -> str | None:
        return cast(str | None, self.redis.get(self.keys.job_lease(job_id)))

    # workers announce a warm shutdown so their jobs checkpoint and go back to the queue

    def mark_worker_stopping(self, worker: str, stopping: bool = True) -> None:
        key = self.keys.worker_stopping(worker)
        if stopping:
            self.redis.set(key, "1", ex=600)
        else:
            self.redis.delete(key)

    def worker_stopping(self, worker: str) -> bool:
        return bool(self.redis.exists(self.keys.worker_stopping(worker)))


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
