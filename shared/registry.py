"""The model registry in Redis: models, aliases with their history, announcements.

Model files are the source of truth (shared/store.py); the registry is their index
(MLflow's split: metadata store apart from artifact store). :meth:`ModelRegistry.rebuild`
reconciles the two both ways, so a Redis that lost its data serves the same models
again and a model whose files are gone stops being listed.

Every change that decides what serves (a registration, an alias change, a deletion,
a model found broken) is announced on one pub/sub channel *before* the call returns;
the API processes follow it (shared/model_index.py).

Alias changes, the promotion gate and deletion are ``WATCH`` transactions over the
alias hash and the model's entry: an alias never points at a model being deleted,
and two gates finishing at once cannot both win against the same incumbent.
"""

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar, cast
from uuid import UUID

import redis

from shared.keys import Keys
from shared.redis_conn import call_with_retry
from shared.schemas import (
    Alias,
    AliasChange,
    AliasSource,
    AliasSummary,
    ModelInfo,
    ModelNews,
    ModelSummary,
    NewsKind,
    PromoteOption,
    Promotion,
    utcnow,
)
from shared.store import LoadedModel, ModelFileError, ModelStore

log = logging.getLogger(__name__)

T = TypeVar("T")

HISTORY_MAX = 100
"""Rows kept per alias history."""


class ModelNotFound(LookupError):
    pass


class AliasNotFound(LookupError):
    pass


class ModelInUse(Exception):
    """Aliases point at the model: it may not be deleted."""

    def __init__(self, model_id: UUID, aliases: list[str]) -> None:
        names = ", ".join(sorted(aliases))
        super().__init__(f"model {model_id} is served by alias(es) {names}; move them first")
        self.aliases = aliases


class NoRollback(Exception):
    """The alias has no earlier target, or that model no longer exists."""


def model_info(model: LoadedModel, **facts: object) -> ModelInfo:
    """The registry entry of a stored model: its metadata plus file facts."""
    return ModelInfo(
        **model.meta.model_dump(),
        id=model.id,
        sha256=model.sha256,
        size_bytes=model.size_bytes,
        **facts,
    )


class ModelRegistry:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def ping(self) -> bool:
        return bool(self.redis.ping())

    def _announce(self, pipe: redis.client.Pipeline, news: ModelNews) -> None:
        pipe.publish(self.keys.announcements(), news.model_dump_json())

    def _transaction(self, do: Callable[[redis.client.Pipeline], T], *watch: str) -> T:
        def run() -> T:
            # redis-py types the callable as -> None; value_from_callable returns its value
            result = self.redis.transaction(do, *watch, value_from_callable=True)  # type: ignore[arg-type]
            return cast(T, result)

        return call_with_retry(self.redis, run)

    # models

    def put_model(self, info: ModelInfo) -> None:
        """Register a model and announce it (before its job reads "succeeded")."""
        stored = info.model_copy(update={"aliases": []})
        with self.redis.pipeline() as pipe:
            pipe.set(self.keys.model(info.id), stored.model_dump_json())
            pipe.zadd(self.keys.models(), {str(info.id): info.created_at.timestamp()})
            self._announce(pipe, ModelNews(kind=NewsKind.model, model_id=info.id))
            pipe.execute()

    def get_model(self, model_id: UUID) -> ModelInfo | None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.model(model_id))
            pipe.hgetall(self.keys.aliases())
            raw, aliases = pipe.execute()
        if not raw:
            return None
        info = ModelInfo.model_validate_json(raw)
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
        for raw in raws:
            if raw:
                summary = ModelInfo.model_validate_json(raw).summary()
                summary.aliases = _names_for(summary.id, aliases)
                items.append(summary)
        return items, int(total)

    def model_ids(self) -> list[UUID]:
        return [UUID(i) for i in cast(list[str], self.redis.zrange(self.keys.models(), 0, -1))]

    def has_models(self) -> bool:
        return bool(self.redis.exists(self.keys.models()))

    def mark_broken(self, model_id: UUID, reason: str | None) -> None:
        """Record that the model's file failed (or, ``None``, passed again) its check."""

        def change(pipe: redis.client.Pipeline) -> None:
            raw = pipe.get(self.keys.model(model_id))
            if not raw:
                return
            info = ModelInfo.model_validate_json(raw)
            if info.broken == reason:
                return
            info.broken = reason
            pipe.multi()
            pipe.set(self.keys.model(model_id), info.model_dump_json())
            self._announce(pipe, ModelNews(kind=NewsKind.broken, model_id=model_id))

        self._transaction(change, self.keys.model(model_id))

    def delete_model(self, model_id: UUID, store: ModelStore) -> None:
        """Refuse while an alias points at it; else mark it deleting (no alias may take it
        from then on), remove its files, then its entry, and announce it."""
        key = self.keys.model(model_id)

        def mark(pipe: redis.client.Pipeline) -> None:
            raw = pipe.get(key)
            if not raw:
                raise ModelNotFound(str(model_id))
            aliases = _names_for(model_id, cast(dict[str, str], pipe.hgetall(self.keys.aliases())))
            if aliases:
                raise ModelInUse(model_id, aliases)
            info = ModelInfo.model_validate_json(raw)
            info.deleting = True
            pipe.multi()
            pipe.set(key, info.model_dump_json())
            pipe.zrem(self.keys.models(), str(model_id))

        self._transaction(mark, key, self.keys.aliases())
        store.delete(model_id)
        with self.redis.pipeline() as pipe:
            pipe.delete(key)
            self._announce(pipe, ModelNews(kind=NewsKind.deleted, model_id=model_id))
            pipe.execute()

    def apply_retention(
        self, keep: int, store: ModelStore, protected: Iterable[UUID] = ()
    ) -> list[UUID]:
        """Delete the oldest models beyond the ``keep`` newest, sparing any an alias
        points at and ``protected`` ones (e.g. a running job's parent)."""
        spared = set(protected)
        aliased = {UUID(v) for v in self._alias_targets().values()}
        removed = []
        for raw_id in cast(list[str], self.redis.zrevrange(self.keys.models(), keep, -1)):
            model_id = UUID(raw_id)
            if model_id in spared or model_id in aliased:
                continue
            try:
                self.delete_model(model_id, store)
            except (ModelInUse, ModelNotFound):
                continue  # an alias took it meanwhile, or another worker deleted it
            removed.append(model_id)
        if removed:
            log.info("retention: deleted %d model(s) beyond the %d newest", len(removed), keep)
        return removed

    # aliases

    def _alias_targets(self) -> dict[str, str]:
        """Alias name -> model id."""
        raws = cast(dict[str, str], self.redis.hgetall(self.keys.aliases()))
        return {
            name: str(AliasSummary.model_validate_json(raw).model_id) for name, raw in raws.items()
        }

    def list_aliases(self) -> list[AliasSummary]:
        raws = self.redis.hgetall(self.keys.aliases())
        return sorted(
            (AliasSummary.model_validate_json(raw) for raw in raws.values()),
            key=lambda alias: alias.name,
        )

    def get_alias(self, name: str) -> Alias | None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.aliases(), name)
            pipe.lrange(self.keys.alias_history(name), 0, -1)
            raw, rows = pipe.execute()
        if not raw:
            return None
        history = [AliasChange.model_validate_json(row) for row in rows]
        return Alias(**AliasSummary.model_validate_json(raw).model_dump(), history=history)

    def set_alias(
        self,
        name: str,
        model_id: UUID,
        source: AliasSource = AliasSource.api,
        reason: str | None = None,
    ) -> Alias:
        """Point ``name`` at an existing model (:class:`ModelNotFound` otherwise)."""

        def change(pipe: redis.client.Pipeline) -> None:
            current = pipe.hget(self.keys.aliases(), name)
            self._require_model(pipe, model_id)
            previous = AliasSummary.model_validate_json(current).model_id if current else None
            pipe.multi()
            self._write_alias(pipe, name, model_id, previous, source, reason)

        self._transaction(change, self.keys.aliases(), self.keys.model(model_id))
        alias = self.get_alias(name)
        assert alias is not None
        return alias

    def rollback(self, name: str, reason: str | None = None) -> Alias:
        """Point ``name`` back at the target it had before its last change."""
        target: UUID | None = None

        def change(pipe: redis.client.Pipeline) -> None:
            nonlocal target
            current = pipe.hget(self.keys.aliases(), name)
            if not current:
                raise AliasNotFound(name)
            last = pipe.lindex(self.keys.alias_history(name), 0)
            previous = AliasChange.model_validate_json(last).previous_model_id if last else None
            if previous is None:
                raise NoRollback(f"alias {name} has no earlier target")
            target = previous
            pipe.watch(self.keys.model(previous))
            try:
                self._require_model(pipe, previous)
            except ModelNotFound:
                raise NoRollback(f"alias {name}'s earlier target {previous} is gone") from None
            now = AliasSummary.model_validate_json(current).model_id
            pipe.multi()
            self._write_alias(pipe, name, previous, now, AliasSource.rollback, reason)

        self._transaction(change, self.keys.aliases(), self.keys.alias_history(name))
        alias = self.get_alias(name)
        assert alias is not None and alias.model_id == target
        return alias

    def delete_alias(self, name: str) -> None:
        def change(pipe: redis.client.Pipeline) -> None:
            if not pipe.hexists(self.keys.aliases(), name):
                raise AliasNotFound(name)
            pipe.multi()
            pipe.hdel(self.keys.aliases(), name)
            pipe.delete(self.keys.alias_history(name))
            self._announce(pipe, ModelNews(kind=NewsKind.alias, alias=name))

        self._transaction(change, self.keys.aliases())

    def promote_if_better(
        self,
        candidate: ModelInfo,
        option: PromoteOption,
        accuracy: float | None,
        *,
        max_test_drop: float | None = None,
        incumbent_metric: Callable[[ModelInfo], float | None] | None = None,
    ) -> Promotion:
        """The promotion gate, as one transaction: set ``option.alias`` to the candidate
        if the alias has no target, or if ``accuracy`` (the candidate's ``option.metric``)
        >= the incumbent's + min_gain, and in any case only if the candidate's test
        accuracy is not below the incumbent's by more than ``max_test_drop``.

        For ``feedback_accuracy`` the incumbent is measured by ``incumbent_metric`` (on
        the candidate's held-out corrections: the cards' own figures come from different
        hold-outs and do not compare)."""
        name = option.alias
        outcome: Promotion | None = None
        measured: dict[UUID, float | None] = {}

        def incumbent_value(incumbent: ModelInfo) -> float | None:
            if option.metric == "test_accuracy":
                return incumbent.test_accuracy
            if incumbent_metric is None:
                return incumbent.feedback_accuracy
            if incumbent.id not in measured:  # the transaction may re-run
                measured[incumbent.id] = incumbent_metric(incumbent)
            return measured[incumbent.id]

        def decide(pipe: redis.client.Pipeline) -> None:
            nonlocal outcome
            current = pipe.hget(self.keys.aliases(), name)
            incumbent_id = AliasSummary.model_validate_json(current).model_id if current else None
            incumbent = None
            if incumbent_id is not None:
                raw = pipe.get(self.keys.model(incumbent_id))
                incumbent = ModelInfo.model_validate_json(raw) if raw else None
            incumbent_accuracy = incumbent_value(incumbent) if incumbent else None
            promoted, reason = _gate(accuracy, incumbent_id, incumbent_accuracy, option.min_gain)
            if promoted and incumbent is not None and max_test_drop is not None:
                promoted, reason = _test_floor(candidate, incumbent, max_test_drop, reason)
            outcome = Promotion(
                alias=name,
                promoted=promoted,
                candidate_accuracy=accuracy,
                incumbent_accuracy=incumbent_accuracy,
                incumbent_model_id=incumbent_id,
                reason=reason,
                metric=option.metric,
            )
            pipe.multi()
            if promoted:
                self._write_alias(pipe, name, candidate.id, incumbent_id, AliasSource.gate, reason)

        self._transaction(decide, self.keys.aliases())
        assert outcome is not None
        return outcome

    def _require_model(self, pipe: redis.client.Pipeline, model_id: UUID) -> ModelInfo:
        raw = pipe.get(self.keys.model(model_id))
        info = ModelInfo.model_validate_json(raw) if raw else None
        if info is None or info.deleting:
            raise ModelNotFound(str(model_id))
        return info

    def _write_alias(
        self,
        pipe: redis.client.Pipeline,
        name: str,
        model_id: UUID,
        previous: UUID | None,
        source: AliasSource,
        reason: str | None,
    ) -> None:
        now = utcnow()
        summary = AliasSummary(name=name, model_id=model_id, updated_at=now)
        change = AliasChange(
            model_id=model_id, previous_model_id=previous, at=now, reason=reason, source=source
        )
        pipe.hset(self.keys.aliases(), name, summary.model_dump_json())
        pipe.lpush(self.keys.alias_history(name), change.model_dump_json())
        pipe.ltrim(self.keys.alias_history(name), 0, HISTORY_MAX - 1)
        self._announce(pipe, ModelNews(kind=NewsKind.alias, alias=name, model_id=model_id))

    # rebuild from the files

    def rebuild(self, store: ModelStore) -> tuple[int, int]:
        """Reconcile the registry with ``MODEL_DIR`` both ways: register every complete,
        valid model file Redis does not know, and drop entries whose file is gone.
        Files that are not models are skipped with the reason (logged), never registered.
        Returns (added, dropped).
        """
        on_disk = set(store.model_ids())
        known = set(self.model_ids())
        added = dropped = 0
        for model_id in sorted(on_disk - known):
            if self.redis.exists(self.keys.model(model_id)):
                continue  # being deleted
            try:
                model = store.load(model_id)
            except ModelFileError as exc:
                log.warning("not registering %s: %s", model_id, exc)
                continue
            self.put_model(model_info(model))
            added += 1
        for model_id in sorted(known - on_disk):
            with self.redis.pipeline() as pipe:
                pipe.delete(self.keys.model(model_id))
                pipe.zrem(self.keys.models(), str(model_id))
                self._announce(pipe, ModelNews(kind=NewsKind.deleted, model_id=model_id))
                pipe.execute()
            log.warning("dropped model %s from the registry: its file is gone", model_id)
            dropped += 1
        if added:
            log.info("registered %d model(s) from %s", added, store.root)
        return added, dropped


def _names_for(model_id: UUID, aliases: dict[str, str]) -> list[str]:
    return sorted(
        name
        for name, raw in aliases.items()
        if AliasSummary.model_validate_json(raw).model_id == model_id
    )


def _test_floor(
    candidate: ModelInfo, incumbent: ModelInfo, max_drop: float, reason: str
) -> tuple[bool, str]:
    """PROMOTION_MAX_TEST_DROP: whatever the metric, MNIST test accuracy may not fall more."""
    floor_of = incumbent.test_accuracy
    if floor_of is None:
        return True, reason
    if candidate.test_accuracy is None:
        return False, "the candidate has no test accuracy to hold against the incumbent's"
    if candidate.test_accuracy < floor_of - max_drop:
        return False, (
            f"test accuracy {candidate.test_accuracy:.4f} fell below the incumbent's "
            f"{floor_of:.4f} by more than {max_drop:g} (PROMOTION_MAX_TEST_DROP)"
        )
    return True, reason


def _gate(
    accuracy: float | None,
    incumbent_id: UUID | None,
    incumbent_accuracy: float | None,
    min_gain: float,
) -> tuple[bool, str]:
    if incumbent_id is None:
        return True, "the alias had no target"
    if accuracy is None:
        return False, "the candidate has no accuracy to compare"
    if incumbent_accuracy is None:
        return True, "the incumbent has no accuracy to compare (or is gone)"
    needed = incumbent_accuracy + min_gain
    if accuracy >= needed:
        return True, f"{accuracy:.4f} >= {incumbent_accuracy:.4f} + {min_gain:g}"
    return False, f"{accuracy:.4f} < {incumbent_accuracy:.4f} + {min_gain:g}"
