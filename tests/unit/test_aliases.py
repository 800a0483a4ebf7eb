"""Aliases, the promotion gate, deletion, retention and the two-way rebuild, against
a real (private) redis-server."""

import threading
import uuid

import pytest

from shared.jobs.store import JobStore
from shared.registry.aliases import Aliases
from shared.registry.service import Models
from shared.registry.store import (
    AliasNotFound,
    ModelInUse,
    ModelNotFound,
    ModelRegistry,
    NoRollback,
)
from shared.schemas.jobs import Job
from shared.schemas.models import AliasSource, ModelInfo, PromoteOption, Promotion
from shared.schemas.params import TrainParams
from tests.models import register


def test_set_get_list_and_history_newest_first(
    registry: ModelRegistry, aliases: Aliases, models: Models
) -> None:
    a, b = register(models), register(models)
    first = aliases.set_alias("production", a, reason="first")
    assert first.model_id == a and first.history[0].previous_model_id is None
    second = aliases.set_alias("production", b, reason="better")
    assert [row.model_id for row in second.history] == [b, a]
    assert second.history[0].previous_model_id == a
    assert second.history[0].source is AliasSource.api and second.history[0].reason == "better"
    assert [alias.name for alias in aliases.list_aliases()] == ["production"]
    card = registry.get_model(b)
    assert card is not None and card.aliases == ["production"]
    summaries, total = registry.list_models(0, 10)
    assert total == 2 and {s.id: s.aliases for s in summaries} == {b: ["production"], a: []}


def test_unknown_model_is_refused(registry: ModelRegistry, aliases: Aliases) -> None:
    with pytest.raises(ModelNotFound):
        aliases.set_alias("production", uuid.uuid4())
    assert aliases.get_alias("production") is None


def test_rollback_goes_back_one_change_and_records_it(
    registry: ModelRegistry, aliases: Aliases, models: Models
) -> None:
    a, b = register(models), register(models)
    aliases.set_alias("production", a)
    with pytest.raises(NoRollback):
        aliases.rollback("production")  # no earlier target
    aliases.set_alias("production", b)
    back = aliases.rollback("production")
    assert back.model_id == a
    assert back.history[0].source is AliasSource.rollback
    assert back.history[0].previous_model_id == b
    again = aliases.rollback("production")  # a rollback of the rollback: forward again
    assert again.model_id == b
    with pytest.raises(AliasNotFound):
        aliases.rollback("nope")


def test_rollback_to_a_deleted_model_is_refused(
    registry: ModelRegistry, aliases: Aliases, models: Models
) -> None:
    a, b = register(models), register(models)
    aliases.set_alias("production", a)
    aliases.set_alias("production", b)
    models.delete(a)
    with pytest.raises(NoRollback, match="gone"):
        aliases.rollback("production")
    assert aliases.get_alias("production").model_id == b  # type: ignore[union-attr]


def test_delete_refused_while_aliased_then_gone_everywhere(
    registry: ModelRegistry, aliases: Aliases, models: Models
) -> None:
    a = register(models)
    aliases.set_alias("production", a)
    aliases.set_alias("canary", a)
    with pytest.raises(ModelInUse, match="canary, production"):
        models.delete(a)
    assert models.files.exists(a)
    aliases.delete_alias("production")
    aliases.delete_alias("canary")
    models.delete(a)
    assert registry.get_model(a) is None and registry.list_models(0, 10)[1] == 0
    assert not models.files.exists(a) and models.files.recorded_sha256(a) is None
    assert models.rebuild() == (0, 0)  # nothing brings it back
    with pytest.raises(ModelNotFound):
        models.delete(a)
    with pytest.raises(AliasNotFound):
        aliases.delete_alias("production")


def test_rebuild_reconciles_both_ways(registry: ModelRegistry, models: Models) -> None:
    kept, lost = register(models), register(models)
    models.files.delete(lost)  # its files vanish behind the registry's back
    registry.redis.flushdb()  # and Redis forgets everything
    assert models.rebuild() == (1, 0)
    assert registry.model_ids() == [kept]
    orphan = register(models)
    models.files.delete(orphan)
    assert models.rebuild() == (0, 1)
    assert registry.get_model(orphan) is None


def test_gate_promotes_into_an_empty_alias_then_only_a_better_model(
    registry: ModelRegistry, aliases: Aliases, models: Models
) -> None:
    option = PromoteOption(alias="production", min_gain=0.01)
    first = registry.get_model(register(models, test_accuracy=0.90))
    assert first is not None
    decided = aliases.promote_if_better(first, option, first.test_accuracy)
    assert decided.promoted and decided.incumbent_accuracy is None
    worse = registry.get_model(register(models, test_accuracy=0.905))
    assert worse is not None
    decided = aliases.promote_if_better(worse, option, worse.test_accuracy)
    assert not decided.promoted and decided.incumbent_accuracy == 0.90
    assert decided.incumbent_model_id == first.id
    better = registry.get_model(register(models, test_accuracy=0.92))
    assert better is not None
    decided = aliases.promote_if_better(better, option, better.test_accuracy)
    assert decided.promoted
    alias = aliases.get_alias("production")
    assert alias is not None and alias.model_id == better.id
    assert [row.source for row in alias.history] == [AliasSource.gate, AliasSource.gate]


def test_two_gates_at_once_cannot_both_beat_the_same_incumbent(
    registry: ModelRegistry, aliases: Aliases, models: Models
) -> None:
    """Candidates 0.96 and 0.93 against an incumbent at 0.90, min_gain 0.02, many times
    at once: whichever runs second is judged against the first winner, so 0.93 may only
    win before 0.96, never after it."""
    option = PromoteOption(alias="production", min_gain=0.02)
    for _ in range(10):
        registry.redis.flushdb()
        incumbent = registry.get_model(register(models, test_accuracy=0.90))
        assert incumbent is not None
        aliases.set_alias("production", incumbent.id)
        high = registry.get_model(register(models, test_accuracy=0.96))
        low = registry.get_model(register(models, test_accuracy=0.93))
        assert high is not None and low is not None
        barrier = threading.Barrier(2)
        results: dict[str, Promotion] = {}

        def gate(
            candidate: ModelInfo,
            name: str,
            barrier: threading.Barrier = barrier,
            results: dict[str, Promotion] = results,
        ) -> None:
            barrier.wait()
            results[name] = aliases.promote_if_better(candidate, option, candidate.test_accuracy)

        threads = [
            threading.Thread(target=gate, args=(high, "high")),
            threading.Thread(target=gate, args=(low, "low")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results["high"].promoted  # 0.96 beats both 0.90 and 0.93 + 0.02
        alias = aliases.get_alias("production")
        assert alias is not None and alias.model_id == high.id
        if results["low"].promoted:  # only if it ran first, against 0.90
            assert results["low"].incumbent_model_id == incumbent.id
            assert [row.model_id for row in alias.history][:2] == [high.id, low.id]
        else:
            assert results["low"].incumbent_model_id == high.id


def test_retention_keeps_the_newest_and_spares_aliased_and_parents(
    registry: ModelRegistry, aliases: Aliases, models: Models, jobs: JobStore
) -> None:
    ids = [register(models, minutes_ago=10 - i) for i in range(6)]  # oldest first
    aliases.set_alias("production", ids[0])
    child = Job(id=uuid.uuid4(), params=TrainParams(epochs=1), epochs=1, init_model_id=ids[1])
    assert jobs.create(child, max_queued=10).created  # an active job starts from ids[1]
    removed = models.apply_retention(2)
    assert sorted(removed) == sorted(ids[2:4])
    assert set(registry.model_ids()) == {ids[0], ids[1], ids[4], ids[5]}
    assert not models.files.exists(ids[2]) and models.files.exists(ids[0])


def test_broken_marks_are_kept_and_cleared(registry: ModelRegistry, models: Models) -> None:
    a = register(models)
    registry.mark_broken(a, "integrity check failed")
    card = registry.get_model(a)
    assert card is not None and card.broken == "integrity check failed"
    registry.mark_broken(a, None)
    assert registry.get_model(a).broken is None  # type: ignore[union-attr]
