"""The model registry in Redis: models, aliases with their history, announcements.

Model files are the source of truth (shared/registry/files.py, in the artifact store);
the registry is their index (MLflow's split: metadata store apart from artifact
store); shared/registry/service.py keeps the two together.

Every change that decides what serves (a registration, an alias change, a deletion,
a model found broken) is announced on one pub/sub channel *before* the call returns;
the API processes follow it (shared/registry/index.py).

Alias changes, the promotion gate and deletion are ``WATCH`` transactions over the
alias hash and the model's entry: an alias never points at a model being deleted or
marked broken, two gates finishing at once cannot both win against the same
incumbent, and a model is never deleted while an active job starts from it (the
job store's creation script refuses a parent that is no longer registered, and the
deletion watches the active jobs: one of the two always sees the other).

With ``REDIS_MIN_REPLICAS``, a registration and an alias change return only once the
replicas have them (:meth:`ModelRegistry.confirm`); a registration the rebuild makes
is not waited for (the files it comes from are the truth).
"""

import logging
from functools import cached_property
from typing import cast
from uuid import UUID

import redis

from shared.jobs.leases import Fence
from shared.jobs.store import JobStore
from shared.redisdb.client import Proof, confirm, transact
from shared.redisdb.store import Lua, RedisStore, decode_record
from shared.schemas.canary import Split
from shared.schemas.common import utcnow
from shared.schemas.models import (
    AliasSummary,
    ModelInfo,
    ModelNews,
    ModelSummary,
    NewsKind,
    ReferenceProfile,
)

log = logging.getLogger(__name__)

CLAIM_SECONDS = 600
"""Longest an import may hold a model id while it writes the files."""

_CLAIM = """
-- KEYS: jobs:active, model, claim;  ARGV: id, ttl seconds
if redis.call('sismember', KEYS[1], ARGV[1]) == 1 or redis.call('exists', KEYS[2]) == 1 then
  return 0
end
if not redis.call('set', KEYS[3], '1', 'NX', 'EX', ARGV[2]) then return 0 end
return 1
"""


class ModelNotFound(LookupError):
    pass


class AliasNotFound(LookupError):
    pass


class ModelInUse(Exception):
    """Aliases point at the model, or active jobs start from it: it may not be deleted."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class ModelBroken(Exception):
    """The model failed its check when last loaded: no alias may be moved onto it."""

    def __init__(self, model_id: UUID, reason: str) -> None:
        super().__init__(f"model {model_id} is broken ({reason}); no alias may point at it")


class IdTaken(Exception):
    """A job, a model or a deletion already holds this id."""


class NoRollback(Exception):
    """The alias has no earlier target, or that model no longer exists."""


def decode_info(raw: str | bytes | None) -> ModelInfo | None:
    return decode_record(ModelInfo, raw, "a model entry")


class ModelRegistry(RedisStore):
    _claim = Lua(_CLAIM)

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.redis, self.keys)

    def ping(self) -> bool:
        return bool(self.redis.ping())

    def confirm(self, proof: Proof) -> None:
        """Return once ``REDIS_MIN_REPLICAS`` replicas have the write ``proof`` shows (a
        registration, an alias change); else ``NotReplicated``."""
        confirm(self.redis, self.replication, self.keys.replicated(), proof)

    def announce(self, pipe: redis.client.Pipeline, news: ModelNews) -> None:
        pipe.publish(self.keys.announcements(), news.model_dump_json())

    # models

    def claim(self, model_id: UUID) -> None:
        """Hold ``model_id`` for an import (:class:`IdTaken` if a queued or running job, a
        model or its deletion holds it, or another import claimed it); :meth:`put_model`
        ends the claim. A job that has ended holds no claim on its id: a model exported,
        deleted and imported again comes back under its id. A job created later with a
        claimed id (a sweep's trial, whose id is derived) is refused by the job store."""
        keys = [self.keys.jobs_active(), self.keys.model(model_id), self.keys.model_claim(model_id)]
        if not self._claim(keys=keys, args=[str(model_id), CLAIM_SECONDS]):
            raise IdTaken(
                f"model {model_id} exists already, or a queued or running job or another "
                "import holds its id"
            )

    def release_claim(self, model_id: UUID) -> None:
        self.redis.delete(self.keys.model_claim(model_id))

    def put_model(
        self, info: ModelInfo, fence: Fence | None = None, *, confirmed: bool = True
    ) -> ModelInfo:
        """Register a model and announce it (before its job reads "succeeded"). It is
        ordered by when the registry received it. With a ``fence`` (a worker's), only
        while the writer still holds its job (:class:`~shared.jobs.leases.Superseded`).
        ``confirmed``: return only once the replicas have it (``NotReplicated``; a
        registration is idempotent, so whoever retries registers it again)."""
        received = info.registered_at or utcnow()
        stored = info.model_copy(update={"aliases": [], "registered_at": received})

        def register(pipe: redis.client.Pipeline) -> None:
            if fence is not None:
                fence.check(pipe)
            pipe.multi()
            pipe.set(self.keys.model(info.id), stored.model_dump_json())
            pipe.zadd(self.keys.models(), {str(info.id): _score(stored)})
            pipe.delete(self.keys.model_claim(info.id))
            self.announce(pipe, ModelNews(kind=NewsKind.model, model_id=info.id))

        transact(self.redis, register)
        if confirmed:
            self.confirm((("EXISTS", self.keys.model(info.id)), 1))
        return stored

    def get_model(self, model_id: UUID) -> ModelInfo | None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.model(model_id))
            pipe.hgetall(self.keys.aliases())
            raw, aliases = pipe.execute()
        info = decode_info(raw)
        if info is None:
            return None
        info.aliases = _names_for(info.id, aliases)
        return info

    def list_models(self, offset: int, limit: int) -> tuple[list[ModelSummary], int]:
        """Summaries, newest first (no confusion matrix or misclassified images)."""
        ids = cast(list[str], self.redis.zrevrange(self.keys.models(), offset, offset + limit - 1))
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.models())
            pipe.hgetall(self.keys.aliases())
            pipe.mget([self.keys.model(i) for i in ids] or [self.keys.model("none")])
            total, aliases, raws = pipe.execute()
        items = []
        for info in map(decode_info, raws):
            if info is not None:
                summary = info.summary()
                summary.aliases = _names_for(summary.id, aliases)
                items.append(summary)
        return items, int(total)

    def model_ids(self) -> list[UUID]:
        """Registered models, oldest first."""
        return [UUID(i) for i in cast(list[str], self.redis.zrange(self.keys.models(), 0, -1))]

    def known(self, model_id: UUID) -> bool:
        """An entry exists (registered, or being deleted)."""
        return bool(self.redis.exists(self.keys.model(model_id)))

    def newest(self, keep: int) -> tuple[list[UUID], list[UUID]]:
        """The ``keep`` newest ids, and the older ones."""
        ids = self.model_ids()
        cut = max(0, len(ids) - keep)
        return ids[cut:], ids[:cut]

    def count(self) -> int:
        return int(self.redis.zcard(self.keys.models()))

    def has_models(self) -> bool:
        return bool(self.redis.exists(self.keys.models()))

    def mark_broken(self, model_id: UUID, reason: str | None) -> None:
        """Record that the model's file failed (or, ``None``, passed again) its check."""

        def change(pipe: redis.client.Pipeline) -> None:
            info = decode_info(pipe.get(self.keys.model(model_id)))
            if info is None or info.broken == reason:
                return
            info.broken = reason
            pipe.multi()
            pipe.set(self.keys.model(model_id), info.model_dump_json())
            self.announce(pipe, ModelNews(kind=NewsKind.broken, model_id=model_id))

        transact(self.redis, change, self.keys.model(model_id))

    def keep_reference_profile(
        self, model_id: UUID, profile: ReferenceProfile
    ) -> ReferenceProfile | None:
        """Keep a reference profile computed after registration (a model that came
        without one); the first one kept stays. Returns the kept profile, or None if
        the model is gone or being deleted. Not announced: it changes nothing that
        serves."""
        key = self.keys.model(model_id)

        def keep(pipe: redis.client.Pipeline) -> ReferenceProfile | None:
            info = decode_info(pipe.get(key))
            if info is None or info.deleting:
                return None
            if info.reference_profile is not None:
                return info.reference_profile
            info.reference_profile = profile
            pipe.multi()
            pipe.set(key, info.model_dump_json())
            return profile

        return transact(self.redis, keep, key)

    def mark_deleting(self, model_id: UUID) -> ModelInfo:
        """The first step of a deletion, as one transaction: refuse while an alias points
        at the model, a split tries it out, or an active job starts from it
        (:class:`ModelInUse`, naming them); else mark it deleting (no alias may take it
        from then on) and unlist it."""
        key = self.keys.model(model_id)

        def mark(pipe: redis.client.Pipeline) -> ModelInfo:
            info = decode_info(pipe.get(key))
            if info is None:
                raise ModelNotFound(str(model_id))
            aliases = _names_for(model_id, cast(dict[str, str], pipe.hgetall(self.keys.aliases())))
            if aliases:
                names = ", ".join(aliases)
                raise ModelInUse(
                    f"model {model_id} is served by alias(es) {names}; move them first"
                )
            splits = cast(dict[str, str], pipe.hgetall(self.keys.canaries()))
            trying = sorted(
                name
                for name, raw in splits.items()
                if Split.model_validate_json(raw).model_id == model_id
            )
            if trying:
                raise ModelInUse(
                    f"model {model_id} is the candidate of the split on alias(es) "
                    f"{', '.join(trying)}; promote or abort it first"
                )
            children = [str(j.id) for j in self.jobs.active_in(pipe) if j.init_model_id == model_id]
            if children:
                raise ModelInUse(
                    f"model {model_id} is where job(s) {', '.join(children)} start from"
                )
            info.deleting = True
            pipe.multi()
            pipe.set(key, info.model_dump_json())
            pipe.zrem(self.keys.models(), str(model_id))
            return info

        return transact(self.redis, mark, key, self.keys.aliases(), self.keys.canaries())

    def forget(self, model_id: UUID) -> None:
        """The last step of a deletion (its files are gone): the entry and its drift
        window, announced."""
        with self.redis.pipeline() as pipe:
            pipe.delete(self.keys.model(model_id), self.keys.drift_window(model_id))
            pipe.zrem(self.keys.models(), str(model_id))
            pipe.srem(self.keys.drift_models(), str(model_id))
            self.announce(pipe, ModelNews(kind=NewsKind.deleted, model_id=model_id))
            pipe.execute()

    def require_model(self, pipe: redis.client.Pipeline, model_id: UUID) -> ModelInfo:
        """The entry of a model an alias may point at, read under ``WATCH``."""
        info = decode_info(pipe.get(self.keys.model(model_id)))
        if info is None or info.deleting:
            raise ModelNotFound(str(model_id))
        if info.broken is not None:
            raise ModelBroken(model_id, info.broken)
        return info


def _score(info: ModelInfo) -> float:
    """A model's place in the newest-first order: when the registry received it."""
    when = info.registered_at or info.created_at
    return when.timestamp()


def _names_for(model_id: UUID, aliases: dict[str, str]) -> list[str]:
    return sorted(
        name
        for name, raw in aliases.items()
        if AliasSummary.model_validate_json(raw).model_id == model_id
    )
