"""Job records and the model index in Redis.

Keys, all under ``Settings.key_prefix`` (``mnist:`` by default):

- ``job:<id>``          the job record (JSON of :class:`Job`)
- ``job:<id>:history``  one JSON :class:`EpochRecord` per finished epoch (a list)
- ``job:<id>:cancel``   present once a cancel was asked for
- ``job:<id>:lease``    held (with a TTL) by the one worker process training the job
- ``jobs``              sorted set of job ids, scored by creation time
- ``jobs:active``       set of the ids of queued and running jobs
- ``idempotency:<key>`` the job an ``Idempotency-Key`` created, for a day
- ``model:<id>``        the model's :class:`ModelInfo` (JSON)
- ``models``            sorted set of model ids, scored by creation time
- ``models:changed``    pub/sub channel: a model id each time one is registered

Model files are the source of truth: :meth:`Registry.rebuild_models` re-creates
``model:*`` and ``models`` from ``MODEL_DIR`` (the api and the worker run it
at start-up), so a Redis that lost its data serves the same models again.
"""

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any, cast
from uuid import UUID

import redis
import redis.asyncio

from shared.schemas import EpochRecord, Job, JobPublic, JobStatus, ModelInfo, utcnow
from shared.store import LoadedModel, ModelFileError, ModelStore

log = logging.getLogger(__name__)


IDEMPOTENCY_SECONDS = 24 * 3600

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


class JobNotFound(LookupError):
    pass


CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "health_check_interval": 30,
}


def _key(prefix: str, *parts: object) -> str:
    return prefix + ":".join(str(p) for p in parts)


class Registry:
    def __init__(self, client: redis.Redis, prefix: str = "mnist:") -> None:
        self.redis = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "mnist:") -> "Registry":
        return cls(redis.Redis.from_url(url, **CLIENT_OPTIONS), prefix)

    def _key(self, *parts: object) -> str:
        return _key(self.prefix, *parts)

    def ping(self) -> bool:
        return bool(self.redis.ping())

    # jobs

    def create_job(self, job: Job) -> None:
        with self.redis.pipeline() as pipe:
            pipe.set(self._key("job", job.id), job.model_dump_json())
            pipe.zadd(self._key("jobs"), {str(job.id): job.created_at.timestamp()})
            pipe.sadd(self._key("jobs", "active"), str(job.id))
            pipe.execute()

    def active_jobs(self) -> list[Job]:
        """Queued and running jobs (a short list, unlike ``jobs``)."""
        ids = sorted(self.redis.smembers(self._key("jobs", "active")))
        raws = self.redis.mget([self._key("job", i) for i in ids]) if ids else []
        return [Job.model_validate_json(raw) for raw in raws if raw]

    def get_job(self, job_id: UUID) -> Job | None:
        raw = self.redis.get(self._key("job", job_id))
        return Job.model_validate_json(raw) if raw else None

    def get_job_public(self, job_id: UUID) -> JobPublic | None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self._key("job", job_id))
            pipe.lrange(self._key("job", job_id, "history"), 0, -1)
            raw, history = pipe.execute()
        if not raw:
            return None
        job = JobPublic.model_validate_json(raw)
        job.history = [EpochRecord.model_validate_json(row) for row in history]
        return job

    def list_jobs(self, offset: int, limit: int) -> tuple[list[Job], int]:
        ids = self.redis.zrevrange(self._key("jobs"), offset, offset + limit - 1)
        total = self.redis.zcard(self._key("jobs"))
        raws = self.redis.mget([self._key("job", i) for i in ids]) if ids else []
        return [Job.model_validate_json(raw) for raw in raws if raw], int(total)

    def update_job(
        self,
        job_id: UUID,
        change: Callable[[Job], Job | None],
        also: Callable[[redis.client.Pipeline], object] | None = None,
    ) -> Job:
        """Apply ``change`` atomically (optimistic lock); ``None`` means leave it as it is.

        ``also`` queues further commands into the same MULTI when the job changes.
        """
        key = self._key("job", job_id)

        def transaction(pipe: redis.client.Pipeline) -> Job:
            raw = pipe.get(key)
            if not raw:
                raise JobNotFound(str(job_id))
            job = Job.model_validate_json(raw)
            changed = change(job.model_copy(deep=True))
            pipe.multi()
            if changed is not None:
                pipe.set(key, changed.model_dump_json())
                if also is not None:
                    also(pipe)
                return changed
            return job

        result = self.redis.transaction(
            transaction,  # type: ignore[arg-type]  # redis-py types the callable as -> None
            key,
            value_from_callable=True,
        )
        return cast(Job, result)

    def record_epoch(self, job_id: UUID, record: EpochRecord) -> None:
        """Store one epoch's row; rows after it (from a run that was cut short) are dropped."""
        history = self._key("job", job_id, "history")

        def set_epoch(job: Job) -> Job:
            job.epoch = record.epoch
            return job

        def push(pipe: redis.client.Pipeline) -> None:
            _keep_first(pipe, history, record.epoch - 1)
            pipe.rpush(history, record.model_dump_json())

        self.update_job(job_id, set_epoch, also=push)

    def reset_progress(self, job_id: UUID, epochs: int) -> None:
        """Progress back to ``epochs`` finished (a fresh start, or a checkpoint's epoch)."""

        def set_epoch(job: Job) -> Job:
            job.epoch = epochs
            return job

        def trim(pipe: redis.client.Pipeline) -> None:
            _keep_first(pipe, self._key("job", job_id, "history"), epochs)

        self.update_job(job_id, set_epoch, also=trim)

    def finish_job(
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

        def deactivate(pipe: redis.client.Pipeline) -> None:
            pipe.srem(self._key("jobs", "active"), str(job_id))

        return self.update_job(job_id, change, also=deactivate)

    def request_cancel(self, job_id: UUID) -> Job:
        """Flag the job; a queued one is cancelled at once, a running one at its next epoch."""
        self.redis.set(self._key("job", job_id, "cancel"), "1")

        return self.finish_job(job_id, JobStatus.cancelled, only_from=(JobStatus.queued,))

    def cancel_requested(self, job_id: UUID) -> bool:
        return bool(self.redis.exists(self._key("job", job_id, "cancel")))

    # leases: one training process per job

    def acquire_lease(self, job_id: UUID, token: str, seconds: float) -> bool:
        key = self._key("job", job_id, "lease")
        return bool(self.redis.set(key, token, nx=True, px=int(seconds * 1000)))

    def renew_lease(self, job_id: UUID, token: str, seconds: float) -> bool:
        """Extend the lease if ``token`` still holds it."""
        key = self._key("job", job_id, "lease")
        return bool(self.redis.eval(_RENEW, 1, key, token, int(seconds * 1000)))

    def release_lease(self, job_id: UUID, token: str) -> None:
        self.redis.eval(_RELEASE, 1, self._key("job", job_id, "lease"), token)

    def lease_holder(self, job_id: UUID) -> str | None:
        return cast(str | None, self.redis.get(self._key("job", job_id, "lease")))

    # workers announce a warm shutdown so their jobs checkpoint and go back to the queue

    def mark_worker_stopping(self, worker: str, stopping: bool = True) -> None:
        key = self._key("worker", worker, "stopping")
        if stopping:
            self.redis.set(key, "1", ex=600)
        else:
            self.redis.delete(key)

    def worker_stopping(self, worker: str) -> bool:
        return bool(self.redis.exists(self._key("worker", worker, "stopping")))

    # idempotency keys of POST /jobs

    def remember_idempotency(self, key: str, fingerprint: str, job_id: UUID) -> tuple[str, UUID]:
        """Bind ``key`` to this request once; returns the (fingerprint, job id) bound first."""
        name = self._key("idempotency", hashlib.sha256(key.encode()).hexdigest())
        value = f"{fingerprint} {job_id}"
        if not self.redis.set(name, value, nx=True, ex=IDEMPOTENCY_SECONDS):
            value = cast(str | None, self.redis.get(name)) or value
        first_fingerprint, first_id = value.split()
        return first_fingerprint, UUID(first_id)

    def forget_idempotency(self, key: str) -> None:
        self.redis.delete(self._key("idempotency", hashlib.sha256(key.encode()).hexdigest()))

    # models

    def put_model(self, info: ModelInfo) -> None:
        """Register a model and announce it (before its job reads "succeeded")."""
        with self.redis.pipeline() as pipe:
            pipe.set(self._key("model", info.id), info.model_dump_json())
            pipe.zadd(self._key("models"), {str(info.id): info.created_at.timestamp()})
            pipe.publish(self._key("models", "changed"), str(info.id))
            pipe.execute()

    def get_model(self, model_id: UUID) -> ModelInfo | None:
        raw = self.redis.get(self._key("model", model_id))
        return ModelInfo.model_validate_json(raw) if raw else None

    def list_models(self, offset: int, limit: int) -> tuple[list[ModelInfo], int]:
        ids = self.redis.zrevrange(self._key("models"), offset, offset + limit - 1)
        total = self.redis.zcard(self._key("models"))
        raws = self.redis.mget([self._key("model", i) for i in ids]) if ids else []
        return [ModelInfo.model_validate_json(raw) for raw in raws if raw], int(total)

    def has_models(self) -> bool:
        return bool(self.redis.exists(self._key("models")))

    def rebuild_models(self, store: ModelStore) -> int:
        """Register every complete, intact model file not yet in Redis; returns how many."""
        added = 0
        for model_id in store.model_ids():
            if self.redis.exists(self._key("model", model_id)):
                continue
            try:
                model = store.load(model_id)
            except ModelFileError as exc:
                log.warning("not registering %s: %s", model_id, exc)
                continue
            self.put_model(model_info(model))
            added += 1
        if added:
            log.info("registered %d model(s) from %s", added, store.root)
        return added


def _keep_first(client: redis.Redis | redis.client.Pipeline, key: str, n: int) -> None:
    """Keep the first ``n`` items of a list (LTRIM 0 -1 would keep them all)."""
    if n > 0:
        client.ltrim(key, 0, n - 1)
    else:
        client.delete(key)


def model_info(model: LoadedModel) -> ModelInfo:
    """The registry entry of a stored model: its metadata plus file facts."""
    return ModelInfo.model_validate(
        {**model.meta, "id": model.id, "sha256": model.sha256, "size_bytes": model.size_bytes}
    )


class ModelIndex:
    """The model index as ``POST /predict`` reads it: with redis.asyncio, awaited on the
    event loop (a hop to a worker thread and back costs more, and a slow Redis cannot
    block the loop), and the newest model's id without a round trip per request.

    :meth:`follow` (a task of the API's lifespan) subscribes to ``models:changed``, which
    :meth:`Registry.put_model` announces every model on, then keeps the newest id,
    re-reading it on each announcement and every ``REFRESH_SECONDS`` (a bound on
    staleness should the subscription die unnoticed). Whenever it is not subscribed
    (start-up, Redis restarting), :meth:`latest_model_id` asks Redis. Writes stay with
    :class:`Registry`.
    """

    REFRESH_SECONDS = 1.0

    def __init__(self, client: redis.asyncio.Redis, prefix: str = "mnist:") -> None:
        self.redis = client
        self.prefix = prefix
        self._newest: UUID | None = None
        self._current = False  # _newest holds: subscribed, and re-read since the last news
        self._subscribed = False
        self._following: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    def from_url(cls, url: str, prefix: str = "mnist:") -> "ModelIndex":
        return cls(redis.asyncio.Redis.from_url(url, **CLIENT_OPTIONS), prefix)

    async def latest_model_id(self) -> UUID | None:
        return self._newest if self._current else await self._read_latest()

    async def get_model(self, model_id: UUID) -> ModelInfo | None:
        raw = await self.redis.get(_key(self.prefix, "model", model_id))
        return ModelInfo.model_validate_json(raw) if raw else None

    def follow(self) -> None:
        """Start following the announcements (in the running event loop)."""
        self._following = asyncio.create_task(self._follow(), name="follow model announcements")

    async def aclose(self) -> None:
        # Not one cancel(): redis-py's reads with a timeout can take a cancellation for
        # their own timeout (asyncio.timeout in Python 3.11) and carry on.
        self._closing = True
        while self._following is not None and not self._following.done():
            self._following.cancel()
            await asyncio.wait({self._following}, timeout=0.05)
        await self.redis.aclose()

    async def _follow(self) -> None:
        said = False  # once per outage, not every second of it
        while not self._closing:
            try:
                await self._follow_subscribed()
            except (redis.RedisError, OSError) as exc:
                said = said and not self._subscribed
                if not said:
                    log.info("not following model announcements for now: %s", exc)
                    said = True
            finally:
                self._current = self._subscribed = False
            await asyncio.sleep(self.REFRESH_SECONDS)

    async def _follow_subscribed(self) -> None:
        async with self.redis.pubsub() as pubsub:
            await pubsub.subscribe(_key(self.prefix, "models", "changed"))
            confirmed = await pubsub.get_message(timeout=CLIENT_OPTIONS["socket_timeout"])
            if not confirmed or confirmed["type"] != "subscribe":
                raise redis.RedisError("no confirmation of the subscription")
            self._subscribed = True
            while not self._closing:  # subscribed first, then read: no news falls between
                self._newest = await self._read_latest()
                self._current = True
                await pubsub.get_message(timeout=self.REFRESH_SECONDS)  # news, or time's up
                self._current = False

    async def _read_latest(self) -> UUID | None:
        newest = cast(list[str], await self.redis.zrevrange(_key(self.prefix, "models"), 0, 0))
        return UUID(newest[0]) if newest else None
