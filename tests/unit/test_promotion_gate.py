"""The promotion gate with ``metric: feedback_accuracy`` and the test-accuracy floor
(PROMOTION_MAX_TEST_DROP), and retention sparing fine-tunes' parents, on the registry
against a real (private) redis-server."""

import uuid

from shared.registry.aliases import Aliases
from shared.registry.store import ModelRegistry
from shared.schemas.jobs import Job, JobStatus
from shared.schemas.models import ModelInfo, PromoteOption
from shared.schemas.params import TrainParams
from shared.services import Services
from tests.models import register, trained_meta

DROP = 0.005


def card(test: float, feedback: float | None = None) -> ModelInfo:
    model_id = uuid.uuid4()
    meta = trained_meta(model_id, TrainParams(epochs=1), test).model_dump()
    facts = {"id": model_id, "sha256": "0" * 64, "size_bytes": 1, "feedback_accuracy": feedback}
    return ModelInfo.model_validate({**meta, **facts})


def incumbent(
    registry: ModelRegistry, aliases: Aliases, info: ModelInfo, alias: str = "production"
) -> None:
    registry.put_model(info)
    aliases.set_alias(alias, info.id)


def test_feedback_metric_compares_on_the_candidates_holdout(
    registry: ModelRegistry, aliases: Aliases
) -> None:
    old = card(test=0.970, feedback=0.99)  # its own figure, from another hold-out
    incumbent(registry, aliases, old)
    new = card(test=0.968, feedback=0.80)
    registry.put_model(new)
    measured: list[uuid.UUID] = []

    def on_my_holdout(model: ModelInfo) -> float:
        measured.append(model.id)
        return 0.40

    option = PromoteOption(alias="production", min_gain=0.1, metric="feedback_accuracy")
    outcome = aliases.promote_if_better(
        new, option, 0.80, max_test_drop=DROP, incumbent_metric=on_my_holdout
    )
    assert outcome.promoted, outcome.reason
    assert outcome.metric == "feedback_accuracy"
    assert outcome.incumbent_accuracy == 0.40 and measured == [old.id]
    assert aliases.get_alias("production").model_id == new.id  # type: ignore[union-attr]


def test_feedback_metric_not_enough_gain(registry: ModelRegistry, aliases: Aliases) -> None:
    old = card(test=0.970)
    incumbent(registry, aliases, old)
    new = card(test=0.975, feedback=0.45)
    registry.put_model(new)
    option = PromoteOption(alias="production", min_gain=0.1, metric="feedback_accuracy")
    outcome = aliases.promote_if_better(
        new, option, 0.45, max_test_drop=DROP, incumbent_metric=lambda _: 0.40
    )
    assert not outcome.promoted and "0.4500 < 0.4000 + 0.1" in outcome.reason
    assert aliases.get_alias("production").model_id == old.id  # type: ignore[union-attr]


def test_the_test_floor_vetoes_a_better_feedback_score(
    registry: ModelRegistry, aliases: Aliases
) -> None:
    old = card(test=0.970)
    incumbent(registry, aliases, old)
    new = card(test=0.960, feedback=1.0)  # learnt the corrections, forgot MNIST
    registry.put_model(new)
    option = PromoteOption(alias="production", metric="feedback_accuracy")
    outcome = aliases.promote_if_better(
        new, option, 1.0, max_test_drop=DROP, incumbent_metric=lambda _: 0.2
    )
    assert not outcome.promoted
    assert "PROMOTION_MAX_TEST_DROP" in outcome.reason and "0.9600" in outcome.reason
    assert aliases.get_alias("production").model_id == old.id  # type: ignore[union-attr]
    # within the margin it passes
    near = card(test=0.966, feedback=1.0)
    registry.put_model(near)
    outcome = aliases.promote_if_better(
        near, option, 1.0, max_test_drop=DROP, incumbent_metric=lambda _: 0.2
    )
    assert outcome.promoted, outcome.reason


def test_the_test_floor_bounds_a_negative_min_gain_too(
    registry: ModelRegistry, aliases: Aliases
) -> None:
    old = card(test=0.970)
    incumbent(registry, aliases, old)
    new = card(test=0.950)
    registry.put_model(new)
    option = PromoteOption(alias="production", min_gain=-0.05)  # test_accuracy, lenient
    outcome = aliases.promote_if_better(new, option, 0.950, max_test_drop=DROP)
    assert not outcome.promoted and "PROMOTION_MAX_TEST_DROP" in outcome.reason
    # without a floor (the old call) the lenient gate lets it through
    assert aliases.promote_if_better(new, option, 0.950).promoted


def test_an_empty_alias_takes_the_first_candidate(
    registry: ModelRegistry, aliases: Aliases
) -> None:
    new = card(test=0.5)
    registry.put_model(new)
    option = PromoteOption(alias="staging", metric="feedback_accuracy")
    outcome = aliases.promote_if_better(new, option, None, max_test_drop=DROP)
    assert outcome.promoted and outcome.reason == "the alias had no target"


def test_retention_spares_the_model_an_active_job_starts_from(services: Services) -> None:
    registry = services.registry
    ids = [register(services.models) for _ in range(3)]  # oldest first
    fine_tune = Job(id=uuid.uuid4(), params=TrainParams(epochs=1), epochs=1)
    fine_tune.init_model_id = ids[0]
    services.jobs.create(fine_tune, max_queued=10)
    services.models.apply_retention(1)
    assert set(registry.model_ids()) == {ids[0], ids[2]}  # the parent and the newest
    services.jobs.finish(fine_tune.id, JobStatus.succeeded)
    services.models.apply_retention(1)
    assert registry.model_ids() == [ids[2]]
