"""The worker's job lifecycle (``worker.jobs.run_job``) on real MNIST and real Redis,
without Celery in the way."""

import uuid
from pathlib import Path

import pytest

from shared.config import Settings
from shared.jobstore import JobStore
from shared.keys import Keys
from shared.schemas import Job, JobStatus, TrainParams
from shared.store import ModelStore
from tests.procs import mnist_dir
from worker.jobs import Stores, run_job

QUICK = TrainParams(epochs=3, train_size=2000, minibatches=20, eta=0.01, input_scaling="unit")


def settings_for(redis_url: str, tmp_path: Path, **extra: object) -> Settings:
    values: dict = {
        "redis_url": redis_url,
        "key_prefix": Keys("test:").prefix,  # the prefix of the tests' ``keys`` fixture
        "model_dir": tmp_path / "models",  # the ``stores`` fixture's folder
        "mnist_dir": mnist_dir(),
        "mnist_download": False,
    }
    return Settings(**{**values, **extra})


def submit(jobs: JobStore, params: TrainParams = QUICK) -> uuid.UUID:
    job = Job(id=uuid.uuid4(), params=params, epochs=params.epochs)
    assert jobs.create(job, max_queued=100).created
    return job.id


@pytest.mark.usefixtures("mnist_data")
def test_job_trains_saves_and_registers_a_model(
    stores: Stores, redis_url: str, tmp_path: Path
) -> None:
    settings = settings_for(redis_url, tmp_path)
    job_id = submit(stores.jobs)
    assert run_job(job_id, settings, stores) is JobStatus.succeeded
    job = stores.jobs.get_public(job_id)
    assert job is not None
    assert job.status is JobStatus.succeeded and job.model_id == job_id and job.attempts == 1
    assert [row.epoch for row in job.history] == [1, 2, 3]
    assert job.history[-1].cost < job.history[0].cost
    assert job.test_accuracy is not None and job.test_accuracy > 0.5
    info = stores.registry.get_model(job_id)
    assert info is not None and info.sha256 == ModelStore(settings.model_dir).recorded_sha256(
        job_id
    )
    assert info.params == QUICK and info.input_scale == 1 / 255


@pytest.mark.usefixtures("mnist_data")
def test_validation_split_reports_accuracy_per_epoch(
    stores: Stores, redis_url: str, tmp_path: Path
) -> None:
    job_id = submit(stores.jobs, QUICK.model_copy(update={"validation_fraction": 0.2}))
    run_job(job_id, settings_for(redis_url, tmp_path), stores)
    job = stores.jobs.get_public(job_id)
    assert job is not None and all(0 <= row.val_accuracy <= 1 for row in job.history)  # type: ignore[operator]


def test_cancelled_before_start_never_runs(stores: Stores, redis_url: str, tmp_path: Path) -> None:
    job_id = submit(stores.jobs)
    stores.jobs.request_cancel(job_id)
    assert run_job(job_id, settings_for(redis_url, tmp_path), stores) is JobStatus.cancelled
    job = stores.jobs.get(job_id)
    assert job is not None and job.attempts == 0 and job.model_id is None


def test_failure_is_recorded_with_its_message(
    stores: Stores, redis_url: str, tmp_path: Path
) -> None:
    """The record says what kind of failure; where MNIST_DIR is stays in the log."""
    settings = settings_for(redis_url, tmp_path, mnist_dir=tmp_path / "nowhere")
    job_id = submit(stores.jobs)
    assert run_job(job_id, settings, stores) is JobStatus.failed
    job = stores.jobs.get(job_id)
    assert job is not None and job.error == "MNIST data unavailable"
    assert stores.registry.get_model(job_id) is None


def test_unknown_or_finished_jobs_are_left_alone(
    stores: Stores, redis_url: str, tmp_path: Path
) -> None:
    settings = settings_for(redis_url, tmp_path)
    assert run_job(uuid.uuid4(), settings, stores) is JobStatus.failed
    job_id = submit(stores.jobs)
    stores.jobs.finish(job_id, JobStatus.cancelled)
    assert run_job(job_id, settings, stores) is JobStatus.cancelled
