"""Canary and shadow splits in the registry (shared/registry/canary.py) against a real,
private redis-server, and their pure parts: the client hash, the intervals, the
statistics read from counters, the request's rules."""

import uuid

import pytest
from pydantic import ValidationError

from shared.registry import canary
from shared.registry.canary import NoSplit, SameTarget, lands_on_canary, stats_from, wilson
from shared.registry.service import Models
from shared.registry.store import AliasNotFound, ModelBroken, ModelInUse, ModelNotFound
from shared.schemas.canary import CanaryRequest, SplitMode, Variant
from shared.schemas.models import AliasSource
from tests.models import register


def _canary(model_id: uuid.UUID, percent: int = 10) -> CanaryRequest:
    return CanaryRequest(model_id=model_id, percent=percent)


def test_a_client_keeps_its_side_and_raising_the_percent_only_moves_clients_to_the_canary() -> None:
    clients = [f"client-{i}" for i in range(2000)]
    sides = {p: {c for c in clients if lands_on_canary("split-a", c, p)} for p in (5, 20, 50)}
    assert sides[5] <= sides[20] <= sides[50]
    for percent, chosen in sides.items():  # 99.9% binomial bounds, normal approximation
        sd = (2000 * percent / 100 * (1 - percent / 100)) ** 0.5
        assert abs(len(chosen) - 20 * percent) < 3.3 * sd, (percent, len(chosen))
    again = {c for c in clients if lands_on_canary("split-a", c, 20)}
    assert again == sides[20]
    other = {c for c in clients if lands_on_canary("split-b", c, 20)}
    assert other != sides[20]  # another split reshuffles


def test_wilson_interval_is_honest_at_the_edges() -> None:
    assert wilson(0, 0) is None
    low, high = wilson(0, 10) or (1, 1)
    assert low == 0 and 0.2 < high < 0.35  # 0 of 10: not "surely 0%"
    low, high = wilson(950, 1000) or (0, 0)
    assert 0.93 < low < 0.95 < high < 0.965
    narrow, wide = wilson(900, 1000), wilson(90, 100)
    assert narrow and wide and narrow[1] - narrow[0] < wide[1] - wide[0]


def test_statistics_from_counters() -> None:
    counts: dict[str, float] = {}
    for add in (
        canary.answered(Variant.primary, 3),
        canary.answered(Variant.primary, 1),
        canary.answered(Variant.canary, 2),
        canary.compared(4, 3, 3.6, 3.2),
        canary.dropped(2),
        canary.corrected(Variant.canary, True),
        canary.corrected(Variant.canary, False),
    ):
        for field, value in add.items():
            counts[field] = counts.get(field, 0) + value
    stats = stats_from({field: repr(value) for field, value in counts.items()})
    assert (stats.primary.requests, stats.primary.images) == (2, 4)
    assert (stats.canary.requests, stats.canary.images) == (1, 2)
    assert stats.shadow.compared == 4 and stats.shadow.agreement == 0.75
    assert stats.shadow.dropped == 2
    assert stats.primary.mean_top_probability == pytest.approx(0.9)
    assert stats.canary.mean_top_probability == pytest.approx(0.8)
    assert (stats.canary.corrections, stats.canary.correct, stats.canary.accuracy) == (2, 1, 0.5)
    assert stats.primary.accuracy is None and stats.primary.accuracy_interval is None
    empty = stats_from({})
    assert empty.shadow.agreement is None and empty.canary.requests == 0


@pytest.mark.parametrize(
    "body",
    [
        {"percent": 0},
        {"percent": 100},
        {"percent": -5},
        {},  # a canary needs its percent
        {"percent": 10.5},
        {"percent": True},
        {"percent": "10"},
        {"mode": "shadow", "percent": 10},
        {"mode": "both", "percent": 10},
        {"percent": 10, "extra": 1},
    ],
)
def test_the_request_refuses_what_the_contract_refuses(body: dict) -> None:
    with pytest.raises(ValidationError):
        CanaryRequest.model_validate({"model_id": str(uuid.uuid4()), **body})


def test_the_request_takes_a_canary_percent_or_a_shadow() -> None:
    model_id = str(uuid.uuid4())
    assert CanaryRequest.model_validate({"model_id": model_id, "percent": 1}).percent == 1
    assert CanaryRequest.model_validate({"model_id": model_id, "percent": 99}).percent == 99
    shadow = CanaryRequest.model_validate({"model_id": model_id, "mode": "shadow"})
    assert shadow.mode is SplitMode.shadow and shadow.percent is None


def test_start_checks_the_alias_the_model_and_the_target(models: Models) -> None:
    a, b = register(models), register(models)
    with pytest.raises(AliasNotFound):
        models.start_split("production", _canary(b))
    models.set_alias("production", a)
    with pytest.raises(ModelNotFound):
        models.start_split("production", _canary(uuid.uuid4()))
    with pytest.raises(SameTarget):
        models.start_split("production", _canary(a))
    models.registry.mark_broken(b, "integrity check failed")
    with pytest.raises(ModelBroken):
        models.splits.start("production", _canary(b))
    assert models.splits.get("production") is None


def test_the_same_candidate_keeps_its_split_another_starts_afresh(models: Models) -> None:
    a, b, c = register(models), register(models), register(models)
    models.set_alias("production", a)
    first = models.start_split("production", CanaryRequest(model_id=b, mode=SplitMode.shadow))
    assert first.primary_model_id == a and first.stats.shadow.compared == 0
    models.splits.add({("production", first.id): canary.compared(10, 9, 9.0, 8.0)})
    changed = models.start_split("production", _canary(b, 30))
    assert (changed.id, changed.started_at) == (first.id, first.started_at)
    assert changed.mode is SplitMode.canary and changed.percent == 30
    assert changed.stats.shadow.agreed == 9  # a shadow turned canary keeps its agreement
    other = models.start_split("production", _canary(c))
    assert other.id != first.id and other.stats.shadow.compared == 0
    # counts of the split that was replaced are refused, not added to the new one
    models.splits.add({("production", first.id): canary.answered(Variant.canary, 5)})
    view = models.splits.view("production")
    assert view is not None and view.stats.canary.requests == 0


def test_abort_writes_a_row_that_changes_nothing_and_rollback_passes_it(models: Models) -> None:
    a, b, c = register(models), register(models), register(models)
    models.set_alias("production", a)
    models.set_alias("production", b)
    split = models.start_split("production", _canary(c))
    models.splits.add({("production", split.id): canary.answered(Variant.canary, 1)})
    ended = models.splits.abort("production")
    assert ended.stats.canary.requests == 1  # the final statistics
    alias = models.aliases.get_alias("production")
    assert alias is not None and alias.model_id == b
    row = alias.history[0]
    assert (row.source, row.reason) == (AliasSource.canary, "aborted")
    assert row.model_id == row.previous_model_id == b and row.candidate_model_id == c
    assert models.splits.get("production") is None
    with pytest.raises(NoSplit):
        models.splits.abort("production")
    assert models.rollback("production").model_id == a  # the last real change: a -> b


def test_promote_moves_the_alias_and_ends_the_split(models: Models) -> None:
    a, b = register(models), register(models)
    models.set_alias("production", a)
    models.start_split("production", _canary(b, 25))
    with pytest.raises(ModelInUse):  # a candidate is not deleted under a split
        models.delete(b)
    alias = models.promote_split("production")
    assert alias.model_id == b
    row = alias.history[0]
    assert (row.source, row.model_id, row.previous_model_id) == (AliasSource.canary, b, a)
    assert row.candidate_model_id == b and row.reason == "promoted from canary at 25%"
    assert models.splits.get("production") is None
    assert not models.splits.redis.exists(models.splits.keys.canary_stats("production"))
    with pytest.raises(NoSplit):
        models.promote_split("production")


def test_any_other_change_of_the_alias_ends_its_split(models: Models) -> None:
    a, b, c = register(models), register(models), register(models)
    models.set_alias("production", a)
    models.start_split("production", _canary(b))
    models.set_alias("production", c)
    assert models.splits.get("production") is None
    models.start_split("production", _canary(b))
    models.aliases.delete_alias("production")
    assert models.splits.get("production") is None
    assert models.splits.views() == []


def test_retention_spares_a_candidate(models: Models) -> None:
    a, b = register(models, minutes_ago=10), register(models, minutes_ago=5)
    newest = register(models)
    models.set_alias("production", newest)
    models.start_split("production", _canary(a))
    assert models.apply_retention(1) == [b]
    assert models.splits.candidates() == {a}
