"""The worker's job lifecycle (``worker.jobs.run_job``) on real MNIST and real Redis,
without Celery in the way."""

import uuid
from pathlib import Path

import pytest

from shared.config import Settings
from shared.registry import Registry
from shared.schemas import Job, JobStatus, TrainParams
from shared.store import ModelStore
from tests.procs import mnist_dir
from worker.jobs import run_job

QUICK = TrainParams(epochs=3, train_size=2000, minibatches=20, eta=0.01, input_scaling="unit")


def settings_for(redis_url: str, tmp_path: Path, **extra: object) -> Settings:
    values: dict = {
        "redis_url": redis_url,
        "key_prefix": "test:",
        "model_dir": tmp_path / "models",
        "mnist_dir": mnist_dir(),
        "mnist_download": False,
    }
    return Settings(**{**values, **extra})


def submit(registry: Registry, params: TrainParams = QUICK) -> uuid.UUID:
    job = Job(id=uuid.uuid4(), params=params, epochs=params.epochs)
    registry.create_job(job)
    return job.id


@pytest.mark.usefixtures("mnist_data")
def test_job_trains_saves_and_registers_a_model(
    registry: Registry, redis_url: str, tmp_path: Path
) -> None:
    settings = settings_for(redis_url, tmp_path)
    job_id = submit(registry)
    assert run_job(job_id, settings, registry) is JobStatus.succeeded
    job = registry.get_job_public(job_id)
    assert job is not None
    assert job.status is JobStatus.succeeded and job.model_id == job_id and job.attempts == 1
    assert [row.epoch for row in job.history] == [1, 2, 3]
    assert job.history[-1].cost < job.history[0].cost
    assert job.test_accuracy is not None and job.test_accuracy > 0.5
    info = registry.get_model(job_id)
    assert info is not None and info.sha256 == ModelStore(settings.model_dir).recorded_sha256(
        job_id
    )
    assert info.params == QUICK and info.input_scale == 1 / 255


@pytest.mark.usefixtures("mnist_data")
def test_validation_split_reports_accuracy_per_epoch(
    registry: Registry, redis_url: str, tmp_path: Path
) -> None:
    job_id = submit(registry, QUICK.model_copy(update={"validation_fraction": 0.2}))
    run_job(job_id, settings_for(redis_url, tmp_path), registry)
    job = registry.get_job_public(job_id)
    assert job is not None and all(0 <= row.val_accuracy <= 1 for row in job.history)  # type: ignore[operator]


def test_cancelled_before_start_never_runs(
    registry: Registry, redis_url: str, tmp_path: Path
) -> None:
    job_id = submit(registry)
    registry.request_cancel(job_id)
    assert run_job(job_id, settings_for(redis_url, tmp_path), registry) is JobStatus.cancelled
    job = registry.get_job(job_id)
    assert job is not None and job.attempts == 0 and job.model_id is None


def test_failure_is_recorded_with_its_message(
    registry: Registry, redis_url: str, tmp_path: Path
) -> None:
    """The record says what kind of failure; where MNIST_DIR is stays in the log."""
    settings = settings_for(redis_url, tmp_path, mnist_dir=tmp_path / "nowhere")
    job_id = submit(registry)
    assert run_job(job_id, settings, registry) is JobStatus.failed
    job = registry.get_job(job_id)
    assert job is not None and job.error == "MNIST data unavailable"
    assert registry.get_model(job_id) is None


def test_unknown_or_finished_jobs_are_left_alone(
    registry: Registry, redis_url: str, tmp_path: Path
) -> None:
    settings = settings_for(redis_url, tmp_path)
    assert run_job(uuid.uuid4(), settings, registry) is JobStatus.failed
    job_id = submit(registry)
    registry.finish_job(job_id, JobStatus.cancelled)
    assert run_job(job_id, settings, registry) is JobStatus.cancelled
