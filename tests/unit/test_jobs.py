"""The worker's job lifecycle (``worker.run.run_job``) on real MNIST and real Redis,
without Celery in the way."""

import uuid

import pytest

from shared.jobs.store import JobStore
from shared.schemas.jobs import Job, JobStatus
from shared.schemas.params import TrainParams
from shared.services import Services
from worker.run import run_job

QUICK = TrainParams(epochs=3, train_size=2000, minibatches=20, eta=0.01, input_scaling="unit")


def with_settings(services: Services, **changes: object) -> Services:
    """The same Redis and folders, some settings changed."""
    return Services.connect(services.settings.model_copy(update=changes))


def submit(jobs: JobStore, params: TrainParams = QUICK) -> uuid.UUID:
    job = Job(id=uuid.uuid4(), params=params, epochs=params.epochs)
    assert jobs.create(job, max_queued=100).created
    return job.id


@pytest.mark.usefixtures("mnist_data")
def test_job_trains_saves_and_registers_a_model(services: Services) -> None:
    job_id = submit(services.jobs)
    assert run_job(job_id, services) is JobStatus.succeeded
    job = services.jobs.get_public(job_id)
    assert job is not None
    assert job.status is JobStatus.succeeded and job.model_id == job_id and job.attempts == 1
    assert [row.epoch for row in job.history] == [1, 2, 3]
    assert job.history[-1].cost < job.history[0].cost
    assert job.test_accuracy is not None and job.test_accuracy > 0.5
    info = services.registry.get_model(job_id)
    assert info is not None and info.sha256 == services.models.files.recorded_sha256(job_id)
    assert info.params == QUICK and info.input_scale == 1 / 255


@pytest.mark.usefixtures("mnist_data")
def test_validation_split_reports_accuracy_per_epoch(services: Services) -> None:
    job_id = submit(services.jobs, QUICK.model_copy(update={"validation_fraction": 0.2}))
    run_job(job_id, services)
    job = services.jobs.get_public(job_id)
    assert job is not None and all(0 <= row.val_accuracy <= 1 for row in job.history)  # type: ignore[operator]


def test_cancelled_before_start_never_runs(services: Services) -> None:
    job_id = submit(services.jobs)
    services.jobs.request_cancel(job_id)
    assert run_job(job_id, services) is JobStatus.cancelled
    job = services.jobs.get(job_id)
    assert job is not None and job.attempts == 0 and job.model_id is None


def test_failure_is_recorded_with_its_message(services: Services) -> None:
    """The record says what kind of failure; where MNIST_DIR is stays in the log."""
    services = with_settings(services, mnist_dir=services.settings.model_dir / "nowhere")
    job_id = submit(services.jobs)
    assert run_job(job_id, services) is JobStatus.failed
    job = services.jobs.get(job_id)
    assert job is not None and job.error == "MNIST data unavailable"
    assert services.registry.get_model(job_id) is None


def test_unknown_or_finished_jobs_are_left_alone(services: Services) -> None:
    assert run_job(uuid.uuid4(), services) is JobStatus.failed
    job_id = submit(services.jobs)
    services.jobs.finish(job_id, JobStatus.cancelled)
    assert run_job(job_id, services) is JobStatus.cancelled
