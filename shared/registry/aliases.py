"""Aliases: named pointers at models (``production``), each with its history, and the
promotion gate. Every change is a ``WATCH`` transaction over the alias hash and the
model's entry (an alias never points at a model being deleted or marked broken; two
gates finishing at once cannot both win against the same incumbent), announced before
the call returns (shared/registry/index.py follows the announcements). A change of an
alias's target, or its deletion, ends the alias's canary or shadow split in the same
transaction (shared/registry/canary.py): its statistics compared the old target.

With ``REDIS_MIN_REPLICAS``, a change returns only once the replicas have it; one they
did not confirm in time is undone (if nothing changed the alias since) and raises
``NotReplicated``, so that a client's retry, a rollback's included, does it once. A
deletion and a canary's promotion are not undone: their retry finds the alias gone, or
the split ended."""

from collections.abc import Callable, Iterable
from typing import NamedTuple, cast
from uuid import UUID

import redis

from shared.redisdb.client import NotReplicated, transact
from shared.redisdb.keys import Keys
from shared.registry.gate import gate, within_test_floor
from shared.registry.store import (
    AliasNotFound,
    ModelBroken,
    ModelNotFound,
    ModelRegistry,
    NoRollback,
    decode_info,
)
from shared.schemas.common import utcnow
from shared.schemas.models import (
    Alias,
    AliasChange,
    AliasSource,
    AliasSummary,
    ModelInfo,
    ModelNews,
    NewsKind,
    PromoteOption,
    Promotion,
)

HISTORY_MAX = 100
"""Rows kept per alias history."""


class Written(NamedTuple):
    """One alias change as stored: what the alias held before (raw JSON, or ``None``),
    its new summary and the history row pushed (raw JSON): enough to confirm it, and to
    undo it if it is still the latest."""

    name: str
    before: str | None
    summary: str
    row: str


class Aliases:
    def __init__(self, models: ModelRegistry) -> None:
        self.models = models
        self.redis: redis.Redis = models.redis
        self.keys: Keys = models.keys

    def alias_targets(self) -> dict[str, UUID]:
        """Alias name -> model id."""
        raws = cast(dict[str, str], self.redis.hgetall(self.keys.aliases()))
        return {name: AliasSummary.model_validate_json(raw).model_id for name, raw in raws.items()}

    def list_aliases(self) -> list[AliasSummary]:
        raws = self.redis.hgetall(self.keys.aliases())
        return sorted(
            (AliasSummary.model_validate_json(raw) for raw in raws.values()),
            key=lambda alias: alias.name,
        )

    def alias_histories(self) -> list[tuple[AliasSummary, list[AliasChange]]]:
        """Every alias with its history, in one round trip (for metrics)."""
        summaries = self.list_aliases()
        with self.redis.pipeline(transaction=False) as pipe:
            for summary in summaries:
                pipe.lrange(self.keys.alias_history(summary.name), 0, -1)
            histories = pipe.execute() if summaries else []
        return [
            (summary, [AliasChange.model_validate_json(row) for row in rows])
            for summary, rows in zip(summaries, histories, strict=True)
        ]

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
        """Point ``name`` at an existing, intact model (:class:`ModelNotFound`,
        :class:`ModelBroken` otherwise)."""

        def change(pipe: redis.client.Pipeline) -> Written:
            current = cast(str | None, pipe.hget(self.keys.aliases(), name))
            self.models.require_model(pipe, model_id)
            previous = AliasSummary.model_validate_json(current).model_id if current else None
            pipe.multi()
            return self.write_alias(pipe, name, model_id, previous, source, reason, before=current)

        self.settle(transact(self.redis, change, self.keys.aliases(), self.keys.model(model_id)))
        alias = self.get_alias(name)
        assert alias is not None
        return alias

    def rollback(self, name: str, reason: str | None = None) -> Alias:
        """Point ``name`` back at the target it had before its last change (rows that
        changed nothing, an aborted split's, are passed over)."""
        target: UUID | None = None

        def change(pipe: redis.client.Pipeline) -> Written:
            nonlocal target
            current = cast(str | None, pipe.hget(self.keys.aliases(), name))
            if not current:
                raise AliasNotFound(name)
            rows = pipe.lrange(self.keys.alias_history(name), 0, -1)
            previous = last_change(AliasChange.model_validate_json(row) for row in rows)
            if previous is None:
                raise NoRollback(f"alias {name} has no earlier target")
            target = previous
            pipe.watch(self.keys.model(previous))
            try:
                self.models.require_model(pipe, previous)
            except ModelNotFound:
                raise NoRollback(f"alias {name}'s earlier target {previous} is gone") from None
            now = AliasSummary.model_validate_json(current).model_id
            pipe.multi()
            source = AliasSource.rollback
            return self.write_alias(pipe, name, previous, now, source, reason, before=current)

        history = self.keys.alias_history(name)
        self.settle(transact(self.redis, change, self.keys.aliases(), history))
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
            self.end_split(pipe, name)
            self.models.announce(pipe, ModelNews(kind=NewsKind.alias, alias=name))

        transact(self.redis, change, self.keys.aliases())
        self.models.confirm((("HEXISTS", self.keys.aliases(), name), False))

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
        accuracy is not below the incumbent's by more than ``max_test_drop``, and the
        candidate is registered and intact.

        For ``feedback_accuracy`` the incumbent is measured by ``incumbent_metric`` (on
        the candidate's held-out corrections: the cards' own figures come from different
        hold-outs and do not compare)."""
        name = option.alias
        outcome: Promotion | None = None
        written: Written | None = None
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
            nonlocal outcome, written
            current = cast(str | None, pipe.hget(self.keys.aliases(), name))
            incumbent_id = AliasSummary.model_validate_json(current).model_id if current else None
            incumbent = None
            if incumbent_id is not None:
                incumbent = decode_info(pipe.get(self.keys.model(incumbent_id)))
            incumbent_accuracy = incumbent_value(incumbent) if incumbent else None
            promoted, reason = gate(
                accuracy, incumbent_id is not None, incumbent_accuracy, option.min_gain
            )
            if promoted and incumbent is not None and max_test_drop is not None:
                promoted, reason = within_test_floor(candidate, incumbent, max_test_drop, reason)
            if promoted:
                try:
                    self.models.require_model(pipe, candidate.id)
                except (ModelNotFound, ModelBroken) as exc:
                    promoted, reason = False, f"the candidate cannot serve: {exc}"
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
            written = None  # the transaction may re-run: the last run decides
            if promoted:
                written = self.write_alias(
                    pipe, name, candidate.id, incumbent_id, AliasSource.gate, reason, before=current
                )

        transact(self.redis, decide, self.keys.aliases(), self.keys.model(candidate.id))
        assert outcome is not None
        if written is not None:
            self.settle(written)
        return outcome

    def write_alias(
        self,
        pipe: redis.client.Pipeline,
        name: str,
        model_id: UUID,
        previous: UUID | None,
        source: AliasSource,
        reason: str | None,
        candidate: UUID | None = None,
        *,
        before: str | None,
    ) -> Written:
        """Queue an alias change on ``pipe`` (after ``multi``): the target, a history row,
        the end of the alias's split, the announcement. ``before``: what the alias held
        (its raw summary, read under ``WATCH``), for :meth:`settle`."""
        now = utcnow()
        summary = AliasSummary(name=name, model_id=model_id, updated_at=now).model_dump_json()
        pipe.hset(self.keys.aliases(), name, summary)
        row = self._add_row(pipe, name, model_id, previous, source, reason, candidate)
        self.end_split(pipe, name)
        self.models.announce(pipe, ModelNews(kind=NewsKind.alias, alias=name, model_id=model_id))
        return Written(name, before, summary, row)

    def settle(self, written: Written, *, undo: bool = True) -> None:
        """Confirm a change on the replicas (``REDIS_MIN_REPLICAS``), or raise
        ``NotReplicated``, the change undone first unless ``undo`` is false."""
        try:
            self.models.confirm((("HGET", self.keys.aliases(), written.name), written.summary))
        except NotReplicated:
            if undo:
                self._undo(written)
            raise

    def _undo(self, written: Written) -> None:
        """Put the alias back as it was before ``written``, if nothing changed it since
        (announced, like any change; its history row goes too). A split the change ended
        stays ended: its statistics are gone with it."""
        name, history = written.name, self.keys.alias_history(written.name)

        def change(pipe: redis.client.Pipeline) -> None:
            if pipe.hget(self.keys.aliases(), name) != written.summary:
                return
            restore = pipe.lindex(history, 0) == written.row
            pipe.multi()
            if written.before is None:
                pipe.hdel(self.keys.aliases(), name)
            else:
                pipe.hset(self.keys.aliases(), name, written.before)
            if restore:
                pipe.lpop(history)
            before = AliasSummary.model_validate_json(written.before) if written.before else None
            news = ModelNews(kind=NewsKind.alias, alias=name, model_id=before and before.model_id)
            self.models.announce(pipe, news)

        transact(self.redis, change, self.keys.aliases(), history)

    def record(
        self,
        pipe: redis.client.Pipeline,
        name: str,
        model_id: UUID,
        source: AliasSource,
        reason: str,
        candidate: UUID | None = None,
    ) -> None:
        """Queue a history row that changes nothing (``previous_model_id`` = ``model_id``):
        an aborted split's."""
        self._add_row(pipe, name, model_id, model_id, source, reason, candidate)

    def _add_row(
        self,
        pipe: redis.client.Pipeline,
        name: str,
        model_id: UUID,
        previous: UUID | None,
        source: AliasSource,
        reason: str | None,
        candidate: UUID | None,
    ) -> str:
        change = AliasChange(
            model_id=model_id,
            previous_model_id=previous,
            at=utcnow(),
            reason=reason,
            source=source,
            candidate_model_id=candidate,
        )
        row = change.model_dump_json()
        pipe.lpush(self.keys.alias_history(name), row)
        pipe.ltrim(self.keys.alias_history(name), 0, HISTORY_MAX - 1)
        return row

    def end_split(self, pipe: redis.client.Pipeline, name: str) -> None:
        """Queue the end of the alias's split, if one runs, and of its statistics."""
        pipe.hdel(self.keys.canaries(), name)
        pipe.delete(self.keys.canary_stats(name))


def last_change(rows: Iterable[AliasChange]) -> UUID | None:
    """The target an alias had before its last change, newest row first; rows that
    changed nothing (an aborted split's) do not count."""
    for row in rows:
        if row.previous_model_id != row.model_id:
            return row.previous_model_id
    return None
