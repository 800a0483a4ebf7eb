"""shared/job_memory.py: a job's peak memory estimated from its parameters."""

import pytest

from shared.config import Settings
from shared.ml import job_memory, training
from shared.schemas.params import Preset, TrainParams, with_preset

LIMIT = Settings().job_memory_limit_mb
ISSUE_JOB = {"n_hidden": 1024, "minibatches": 1, "dtype": "float64", "epochs": 1}
"""Issue 10: peaked at 2 GB in the training process, compose's whole worker limit."""


def test_constants_follow_the_trainer() -> None:
    assert job_memory.EVAL_ROWS == training.EVAL_CHUNK
    assert job_memory.FEATURES == 784 and job_memory.OUTPUTS == training.N_CLASSES


def test_the_issue_job_is_too_big_and_the_presets_fit() -> None:
    assert job_memory.estimate_mb(TrainParams(**ISSUE_JOB)) > 1900  # measured ~2 GB
    assert job_memory.too_big(TrainParams(**ISSUE_JOB), LIMIT)
    for preset in Preset:
        params = with_preset(preset, None)
        assert job_memory.estimate_mb(params) < 300
        assert job_memory.too_big(params, LIMIT) == []


def test_the_estimate_grows_with_what_sizes_the_arrays() -> None:
    base = TrainParams(n_hidden=256, minibatches=10)
    estimate = job_memory.estimate_mb
    assert estimate(base.model_copy(update={"n_hidden": 512})) > estimate(base)
    assert estimate(base.model_copy(update={"minibatches": 5})) > estimate(base)
    assert estimate(base.model_copy(update={"dtype": "float64"})) > estimate(base)
    assert estimate(base.model_copy(update={"train_size": 10_000})) < estimate(base)
    # a validation hold-out copies the training images: 784 bytes a row kept
    held_out = TrainParams(train_size=20_000, validation_fraction=0.5, minibatches=10)
    same_rows = TrainParams(train_size=10_000, minibatches=10)
    assert estimate(held_out) - estimate(same_rows) == pytest.approx(10_000 * 784 / 2**20)
    assert estimate(TrainParams(epochs=1)) == estimate(TrainParams(epochs=5000))  # time, not memory


def test_the_formula_by_hand() -> None:
    """The docstring's formula, for one case computed independently."""
    params = TrainParams(n_hidden=100, minibatches=600, dtype="float32")
    s, h, fit, batch = 4, 100, 60_000, 100
    rows = batch + 2048
    per_row = 784 + s * (784 + 3 * h + 70 + 1)
    weights = s * (h * 785 + 10 * (h + 1))
    total = rows * per_row + 6 * weights + fit * 10 * s + fit * 8
    expected = job_memory.BASE_MB + job_memory.BLAS_MB + total / 2**20
    assert job_memory.estimate_mb(params) == pytest.approx(expected)


def test_errors_name_every_sizing_field() -> None:
    errors = job_memory.too_big(TrainParams(**ISSUE_JOB), LIMIT)
    assert [e["loc"] for e in errors] == [
        ("body", "n_hidden"),
        ("body", "minibatches"),
        ("body", "train_size"),
        ("body", "dtype"),
    ]
    assert all("JOB_MEMORY_LIMIT_MB" in str(e["msg"]) for e in errors)
    assert job_memory.too_big(TrainParams(**ISSUE_JOB), 10_000) == []  # a bigger worker
