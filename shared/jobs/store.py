"""Job records in Redis: created by the API (or a sweep), moved on by the worker, read
by everyone. This module is the one owner of the job keys: nothing else writes them.

Every change is a read-modify-write under ``WATCH`` (:meth:`JobStore.update`), so
that concurrent writers (a cancel and the worker's commit, two workers claiming an
orphan) cannot both win; a worker's changes also carry its fencing token
(shared/jobs/leases.py), checked in the same transaction. Creation is one Lua
script: the id, the idempotency key, the queue limit and the insert are checked and
written together. With ``REDIS_MIN_REPLICAS``, a new job is confirmed on the replicas
(:meth:`JobStore.confirm`) before it is acknowledged, or withdrawn
(:meth:`JobStore.withdraw`): shared/submission.py does both.

Reads never trust a record blindly: one that fails to validate (written by an older
version, or damaged) is logged and skipped by lists and metrics, so it cannot take
them down with it.
"""

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import cast
from uuid import UUID

import redis

from shared.jobs.leases import Fence
from shared.jobs.records import (
    Created,
    IdClaimed,
    JobEnded,
    JobNotFound,
    ParentGone,
    QueueFull,
    TooLateToCancel,
    decode,
    decode_rows,
)
from shared.redisdb.client import confirm, transact
from shared.redisdb.store import Lua, RedisStore
from shared.schemas.common import utcnow
from shared.schemas.jobs import EpochRecord, Job, JobEnd, JobPublic, JobStatus

log = logging.getLogger(__name__)

IDEMPOTENCY_SECONDS = 24 * 3600

_CREATE = """
-- KEYS: job, jobs, jobs:active, jobs:queued, models, model:<id>, model:<id>:claim
--       [, idempotency]
-- ARGV: job json, score, job id, max queued, parent model id or '', idempotency value, TTL
if redis.call('exists', KEYS[1]) == 1 then return {'taken', ARGV[3]} end
if redis.call('exists', KEYS[6]) == 1 or redis.call('exists', KEYS[7]) == 1 then
  return {'claimed', ARGV[3]}
end
if KEYS[8] then
  local first = redis.call('get', KEYS[8])
  if first then return {'exists', first} end
end
if ARGV[5] ~= '' and not redis.call('zscore', KEYS[5], ARGV[5]) then
  return {'noparent', ARGV[5]}
end
local queued = redis.call('scard', KEYS[4])
if queued >= tonumber(ARGV[4]) then return {'full', tostring(queued)} end
redis.call('set', KEYS[1], ARGV[1])
redis.call('zadd', KEYS[2], ARGV[2], ARGV[3])
redis.call('sadd', KEYS[3], ARGV[3])
redis.call('sadd', KEYS[4], ARGV[3])
if KEYS[8] then redis.call('set', KEYS[8], ARGV[6], 'EX', ARGV[7]) end
return {'created', ARGV[3]}
"""

_WITHDRAW = """
-- KEYS: job, jobs, jobs:active, jobs:queued, job lease [, idempotency]
-- ARGV: job id, idempotency value
local raw = redis.call('get', KEYS[1])
if not raw then return 'gone' end
if redis.call('exists', KEYS[5]) == 1 or cjson.decode(raw)['status'] ~= 'queued' then
  return 'started'
end
redis.call('del', KEYS[1])
redis.call('zrem', KEYS[2], ARGV[1])
redis.call('srem', KEYS[3], ARGV[1])
redis.call('srem', KEYS[4], ARGV[1])
if KEYS[6] and redis.call('get', KEYS[6]) == ARGV[2] then redis.call('del', KEYS[6]) end
return 'withdrawn'
"""


class JobStore(RedisStore):
    _create = Lua(_CREATE)
    _withdraw = Lua(_WITHDRAW)

    def create(
        self, job: Job, max_queued: int, idempotency: tuple[str, str] | None = None
    ) -> Created:
        """Insert a queued job unless ``max_queued`` are queued (:class:`QueueFull`); or
        find the job an ``(Idempotency-Key, body fingerprint)`` already created, or the
        job that has this id already (a retried step of a sweep).

        One script decides, so nothing can fall between its checks: the id must not be
        a model's or an import's (:class:`IdClaimed`), and a fine-tune's parent must
        still be registered (:class:`ParentGone`; the registry's deletion unlists a
        model in the transaction that checks for active jobs starting from it)."""
        keys = [
            self.keys.job(job.id),
            self.keys.jobs(),
            self.keys.jobs_active(),
            self.keys.jobs_queued(),
            self.keys.models(),
            self.keys.model(job.id),
            self.keys.model_claim(job.id),
        ]
        args: list[str | int | float] = [
            job.model_dump_json(),
            job.created_at.timestamp(),
            str(job.id),
            max_queued,
            str(job.init_model_id) if job.init_model_id else "",
        ]
        if idempotency is not None:
            key, fingerprint = idempotency
            keys.append(self.keys.idempotency(key))
            args += [f"{fingerprint} {job.id}", IDEMPOTENCY_SECONDS]
        outcome, value = cast(list[str], self._create(keys=keys, args=args))
        if outcome == "full":
            raise QueueFull(int(value))
        if outcome == "exists":
            fingerprint, first_id = value.split()
            return Created(UUID(first_id), created=False, fingerprint=fingerprint)
        if outcome == "taken":
            return Created(job.id, created=False, taken=True)
        if outcome == "claimed":
            raise IdClaimed(f"id {job.id} is a model's")
        if outcome == "noparent":
            raise ParentGone(UUID(value))
        return Created(job.id, created=True)

    def confirm(self, job_id: UUID) -> None:
        """Return once ``REDIS_MIN_REPLICAS`` replicas have the job's record (and what was
        written before, such as its queue message); else ``NotReplicated``."""
        proof = (("EXISTS", self.keys.job(job_id)), 1)
        confirm(self.redis, self.replication, self.keys.replicated(), proof)

    def withdraw(self, job_id: UUID, idempotency: tuple[str, str] | None = None) -> bool:
        """Undo a creation that was not confirmed: the record, its place in the sets and
        its Idempotency-Key go, unless a worker has started it already (false then).
        Nothing of it is left for a retry to find, so the retry creates it anew."""
        keys = [
            self.keys.job(job_id),
            self.keys.jobs(),
            self.keys.jobs_active(),
            self.keys.jobs_queued(),
            self.keys.job_lease(job_id),
        ]
        args = [str(job_id), ""]
        if idempotency is not None:
            key, fingerprint = idempotency
            keys.append(self.keys.idempotency(key))
            args[1] = f"{fingerprint} {job_id}"
        return cast(str, self._withdraw(keys=keys, args=args)) != "started"

    def get(self, job_id: UUID) -> Job | None:
        return decode(cast(str | None, self.redis.get(self.keys.job(job_id))))

    def get_many(self, job_ids: Iterable[UUID]) -> dict[UUID, Job]:
        """The readable records among ``job_ids``, in one round trip."""
        ids = list(job_ids)
        raws = self.redis.mget([self.keys.job(i) for i in ids]) if ids else []
        found = {job_id: decode(raw) for job_id, raw in zip(ids, raws, strict=True)}
        return {job_id: job for job_id, job in found.items() if job is not None}

    def get_public(self, job_id: UUID) -> JobPublic | None:
        """The record with its history, read in one round trip."""
        job, history = self.progress(job_id, after=0)
        if job is None:
            return None
        return JobPublic(**job.model_dump(), history=history)

    def progress(self, job_id: UUID, after: int) -> tuple[Job | None, list[EpochRecord]]:
        """The record and the history rows after epoch ``after``, read atomically.

        Row ``i`` of the history is epoch ``i + 1`` (:meth:`record_epoch` trims the rows
        after an epoch before it pushes it), so the rows after ``after`` start at ``after``.
        """
        return self.progress_many([(job_id, after)])[0]

    def progress_many(
        self, wanted: list[tuple[UUID, int]]
    ) -> list[tuple[Job | None, list[EpochRecord]]]:
        """:meth:`progress` of several jobs in one round trip (metrics read every job)."""
        if not wanted:
            return []
        with self.redis.pipeline(transaction=True) as pipe:
            for job_id, after in wanted:
                pipe.get(self.keys.job(job_id))
                pipe.lrange(self.keys.job_history(job_id), after, -1)
            replies = pipe.execute()
        return [
            (decode(raw), decode_rows(rows) if raw else [])
            for raw, rows in zip(replies[::2], replies[1::2], strict=True)
        ]

    def list_jobs(self, offset: int, limit: int) -> tuple[list[Job], int]:
        """Jobs newest first, without history."""
        ids = cast(list[str], self.redis.zrevrange(self.keys.jobs(), offset, offset + limit - 1))
        total = self.redis.zcard(self.keys.jobs())
        jobs = self.get_many(UUID(i) for i in ids)
        return [jobs[UUID(i)] for i in ids if UUID(i) in jobs], int(total)

    def queued_count(self) -> int:
        """Jobs queued now (what ``MAX_QUEUED_JOBS`` limits)."""
        return int(self.redis.scard(self.keys.jobs_queued()))

    def ids(self) -> list[UUID]:
        """Every job id, oldest first."""
        return [UUID(i) for i in cast(list[str], self.redis.zrange(self.keys.jobs(), 0, -1))]

    def active(self) -> list[Job]:
        """Queued and running jobs (a short list, unlike all jobs)."""
        ids = sorted(cast(set[str], self.redis.smembers(self.keys.jobs_active())))
        return list(self.get_many(UUID(i) for i in ids).values())

    def active_in(self, pipe: redis.client.Pipeline) -> list[Job]:
        """:meth:`active`, read inside another store's ``WATCH`` transaction (before its
        ``MULTI``): a job created or ended before that transaction's ``EXEC`` makes it
        run again (the registry's deletion guard)."""
        pipe.watch(self.keys.jobs_active())
        ids = sorted(cast(set[str], pipe.smembers(self.keys.jobs_active())))
        raws = pipe.mget([self.keys.job(i) for i in ids]) if ids else []
        return [job for job in map(decode, raws) if job is not None]

    def update(
        self,
        job_id: UUID,
        change: Callable[[Job], Job | None],
        also: Callable[[redis.client.Pipeline], object] | None = None,
        fence: Fence | None = None,
    ) -> Job:
        """Apply ``change`` atomically (optimistic lock); ``None`` means leave it as it is.

        ``also`` queues further commands into the same MULTI when the job changes. The
        sets of active and queued jobs follow the new status here, for every change.
        With a ``fence``, the change is made only while its token is the job's current
        one (:class:`~shared.jobs.leases.Superseded` otherwise). Exceptions raised by
        ``change`` propagate; a lost connection re-runs the whole step.
        """
        key = self.keys.job(job_id)

        def transaction(pipe: redis.client.Pipeline) -> Job:
            if fence is not None:
                fence.check(pipe)
            job = decode(cast(str | None, pipe.get(key)))
            if job is None:
                raise JobNotFound(str(job_id))
            changed = change(job.model_copy(deep=True))
            pipe.multi()
            if changed is None:
                return job
            pipe.set(key, changed.model_dump_json())
            member = str(job_id)
            if changed.status.finished:
                pipe.srem(self.keys.jobs_active(), member)
            else:
                pipe.sadd(self.keys.jobs_active(), member)
            if changed.status is JobStatus.queued:
                pipe.sadd(self.keys.jobs_queued(), member)
            else:
                pipe.srem(self.keys.jobs_queued(), member)
            if also is not None:
                also(pipe)
            return changed

        return transact(self.redis, transaction, key)

    def record_epoch(
        self,
        job_id: UUID,
        record: EpochRecord,
        fence: Fence | None = None,
        earlier: Sequence[EpochRecord] = (),
    ) -> None:
        """Store one epoch's row; rows after it (from a run that was cut short) are dropped.

        ``earlier``: the run's rows before it, as the trainer holds them. A failover can
        lose the last rows written (replication is asynchronous): the record's ``epoch``,
        written with the rows, is then behind, and the rows are written again from
        ``earlier``, so the history keeps exactly one row per epoch."""
        history = self.keys.job_history(job_id)
        lost = False

        def set_epoch(job: Job) -> Job:
            nonlocal lost  # the transaction may re-run: the last run decides
            lost = job.epoch < record.epoch - 1 and len(earlier) == record.epoch - 1
            job.epoch = record.epoch
            return job

        def push(pipe: redis.client.Pipeline) -> None:
            if lost:
                log.warning("job %s: history rows were lost; writing them again", job_id)
                pipe.delete(history)
                pipe.rpush(history, *(row.model_dump_json() for row in [*earlier, record]))
                return
            _keep_first(pipe, history, record.epoch - 1)
            pipe.rpush(history, record.model_dump_json())

        self.update(job_id, set_epoch, also=push, fence=fence)

    def reset_progress(self, job_id: UUID, epochs: int, fence: Fence | None = None) -> None:
        """Progress back to ``epochs`` finished (a fresh start, or a checkpoint's epoch)."""

        def set_epoch(job: Job) -> Job:
            job.epoch = epochs
            return job

        def trim(pipe: redis.client.Pipeline) -> None:
            _keep_first(pipe, self.keys.job_history(job_id), epochs)

        self.update(job_id, set_epoch, also=trim, fence=fence)

    def finish(
        self,
        job_id: UUID,
        status: JobStatus,
        end: JobEnd | None = None,
        *,
        only_from: tuple[JobStatus, ...] = (JobStatus.queued, JobStatus.running),
        fence: Fence | None = None,
    ) -> Job:
        """Move a job from one of ``only_from`` to a final ``status``, with ``end``'s facts."""
        facts = end.model_dump(exclude_unset=True) if end is not None else {}

        def change(job: Job) -> Job | None:
            if job.status not in only_from:
                return None
            return Job.model_validate(
                {**job.model_dump(), "status": status, "finished_at": utcnow(), **facts}
            )

        return self.update(job_id, change, fence=fence)

    def request_cancel(self, job_id: UUID) -> Job:
        """Flag the job; a queued one is cancelled at once, a running one at its next
        epoch boundary. Raises :class:`JobEnded` or :class:`TooLateToCancel`: one
        transaction with the worker's :meth:`commit`, so a cancel that is accepted
        always wins."""

        def change(job: Job) -> Job:
            if job.status.finished:
                raise JobEnded("job", job)
            if job.committed:
                raise TooLateToCancel(f"job {job.id} is saving its model; it can no longer stop")
            job.cancel_requested = True
            if job.status is JobStatus.queued:
                job.status, job.finished_at = JobStatus.cancelled, utcnow()
            return job

        return self.update(job_id, change)

    def cancel_requested(self, job_id: UUID) -> bool:
        job = self.get(job_id)
        return job is not None and job.cancel_requested

    def commit(self, job_id: UUID, fence: Fence | None = None) -> bool:
        """Pass the point of no return (training done, the model about to be saved),
        unless a cancel came first; true when committed."""
        committed = False

        def change(job: Job) -> Job | None:
            nonlocal committed  # the transaction may re-run: the last run decides
            committed = job.status is JobStatus.running and not job.cancel_requested
            if not committed:
                return None
            job.committed = True
            return job

        self.update(job_id, change, fence=fence)
        return committed


def _keep_first(client: redis.Redis | redis.client.Pipeline, key: str, n: int) -> None:
    """Keep the first ``n`` items of a list (LTRIM 0 -1 would keep them all)."""
    if n > 0:
        client.ltrim(key, 0, n - 1)
    else:
        client.delete(key)
