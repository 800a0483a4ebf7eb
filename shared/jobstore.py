"""Job records in Redis: created by the API, moved on by the worker, read by both.

Every change is a read-modify-write under ``WATCH`` (:meth:`JobStore.update`), so
that concurrent writers (a cancel and the worker's commit, two workers claiming an
orphan) cannot both win. Submission is one Lua script: the idempotency key, the
queue limit and the insert are checked and written together.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from uuid import UUID

import redis

from shared.keys import Keys
from shared.redis_conn import call_with_retry
from shared.schemas import EpochRecord, Job, JobPublic, JobStatus, utcnow

log = logging.getLogger(__name__)

IDEMPOTENCY_SECONDS = 24 * 3600

_CREATE = """
-- KEYS: job, jobs, jobs:active, jobs:queued[, idempotency]
-- ARGV: job json, score, job id, max queued, idempotency value, its TTL
if KEYS[5] then
  local first = redis.call('get', KEYS[5])
  if first then return {'exists', first} end
end
local queued = redis.call('scard', KEYS[4])
if queued >= tonumber(ARGV[4]) then return {'full', tostring(queued)} end
redis.call('set', KEYS[1], ARGV[1])
redis.call('zadd', KEYS[2], ARGV[2], ARGV[3])
redis.call('sadd', KEYS[3], ARGV[3])
redis.call('sadd', KEYS[4], ARGV[3])
if KEYS[5] then redis.call('set', KEYS[5], ARGV[5], 'EX', ARGV[6]) end
return {'created', ARGV[3]}
"""


class JobNotFound(LookupError):
    pass


class JobEnded(Exception):
    """The job already succeeded, failed or was cancelled."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} already {job.status.value}")
        self.job = job


class TooLateToCancel(Exception):
    """Training is over and the model is being saved: the job will succeed."""


@dataclass(frozen=True)
class Created:
    """What submission did: created ``job_id``, or found the key's first job."""

    job_id: UUID
    created: bool
    fingerprint: str | None = None


class QueueFull(Exception):
    def __init__(self, queued: int) -> None:
        super().__init__(f"{queued} jobs are queued already; try later")
        self.queued = queued


class JobStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._create = client.register_script(_CREATE)

    def create(
        self, job: Job, max_queued: int, idempotency: tuple[str, str] | None = None
    ) -> Created:
        """Insert a queued job unless ``max_queued`` are queued (:class:`QueueFull`), or
        return the job an ``(Idempotency-Key, body fingerprint)`` already created."""
        keys = [
            self.keys.job(job.id),
            self.keys.jobs(),
            self.keys.jobs_active(),
            self.keys.jobs_queued(),
        ]
        args: list[str | int | float] = [
            job.model_dump_json(),
            job.created_at.timestamp(),
            str(job.id),
            max_queued,
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
        return Created(job.id, created=True)

    def get(self, job_id: UUID) -> Job | None:
        raw = self.redis.get(self.keys.job(job_id))
        return Job.model_validate_json(raw) if raw else None

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
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.job(job_id))
            pipe.lrange(self.keys.job_history(job_id), after, -1)
            raw, rows = pipe.execute()
        if not raw:
            return None, []
        return Job.model_validate_json(raw), [EpochRecord.model_validate_json(r) for r in rows]

    def list_jobs(self, offset: int, limit: int) -> tuple[list[Job], int]:
        """Jobs newest first, without history."""
        ids = cast(list[str], self.redis.zrevrange(self.keys.jobs(), offset, offset + limit - 1))
        total = self.redis.zcard(self.keys.jobs())
        raws = self.redis.mget([self.keys.job(i) for i in ids]) if ids else []
        return [Job.model_validate_json(raw) for raw in raws if raw], int(total)

    def active(self) -> list[Job]:
        """Queued and running jobs (a short list, unlike all jobs)."""
        ids = sorted(cast(set[str], self.redis.smembers(self.keys.jobs_active())))
        raws = self.redis.mget([self.keys.job(i) for i in ids]) if ids else []
        return [Job.model_validate_json(raw) for raw in raws if raw]

    def update(
        self,
        job_id: UUID,
        change: Callable[[Job], Job | None],
        also: Callable[[redis.client.Pipeline], object] | None = None,
    ) -> Job:
        """Apply ``change`` atomically (optimistic lock); ``None`` means leave it as it is.

        ``also`` queues further commands into the same MULTI when the job changes. The
        sets of active and queued jobs follow the new status here, for every change.
        Exceptions raised by ``change`` propagate; a lost connection re-runs the whole
        step with the client's backoff.
        """
        key = self.keys.job(job_id)

        def transaction(pipe: redis.client.Pipeline) -> Job:
            raw = pipe.get(key)
            if not raw:
                raise JobNotFound(str(job_id))
            job = Job.model_validate_json(raw)
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

        def run() -> Job:
            result = self.redis.transaction(
                transaction,  # type: ignore[arg-type]  # redis-py types the callable as -> None
                key,
                value_from_callable=True,
            )
            return cast(Job, result)

        return call_with_retry(self.redis, run)

    def record_epoch(self, job_id: UUID, record: EpochRecord) -> None:
        """Store one epoch's row; rows after it (from a run that was cut short) are dropped."""
        history = self.keys.job_history(job_id)

        def set_epoch(job: Job) -> Job:
            job.epoch = record.epoch
            return job

        def push(pipe: redis.client.Pipeline) -> None:
            _keep_first(pipe, history, record.epoch - 1)
            pipe.rpush(history, record.model_dump_json())

        self.update(job_id, set_epoch, also=push)

    def reset_progress(self, job_id: UUID, epochs: int) -> None:
        """Progress back to ``epochs`` finished (a fresh start, or a checkpoint's epoch)."""

        def set_epoch(job: Job) -> Job:
            job.epoch = epochs
            return job

        def trim(pipe: redis.client.Pipeline) -> None:
            _keep_first(pipe, self.keys.job_history(job_id), epochs)

        self.update(job_id, set_epoch, also=trim)

    def finish(
        self,
        job_id: UUID,
        status: JobStatus,
        only_from: tuple[JobStatus, ...] = (JobStatus.queued, JobStatus.running),
        **fields: object,
    ) -> Job:
        """Move a job from one of ``only_from`` to a final ``status``, setting ``fields``."""

        def change(job: Job) -> Job | None:
            if job.status not in only_from:
                return None
            return job.model_copy(update={"status": status, "finished_at": utcnow(), **fields})

        return self.update(job_id, change)

    def request_cancel(self, job_id: UUID) -> Job:
        """Flag the job; a queued one is cancelled at once, a running one at its next
        epoch boundary. Raises :class:`JobEnded` or :class:`TooLateToCancel`: one
        transaction with the worker's :meth:`commit`, so a cancel that is accepted
        always wins."""

        def change(job: Job) -> Job:
            if job.status.finished:
                raise JobEnded(job)
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

    def commit(self, job_id: UUID) -> bool:
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

        self.update(job_id, change)
        return committed


def _keep_first(client: redis.Redis | redis.client.Pipeline, key: str, n: int) -> None:
    """Keep the first ``n`` items of a list (LTRIM 0 -1 would keep them all)."""
    if n > 0:
        client.ltrim(key, 0, n - 1)
    else:
        client.delete(key)
