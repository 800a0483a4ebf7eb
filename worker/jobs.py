"""What a worker does with one job id: the lifecycle around :func:`shared.training.train`.

Kept apart from the Celery task so that it reads (and tests) as plain Python.
"""

import logging
from functools import lru_cache
from pathlib import Path
from uuid import UUID

from shared import mnist, training
from shared.config import Settings
from shared.registry import Registry, model_info
from shared.schemas import EpochRecord, Job, JobStatus, utcnow
from shared.store import ModelStore

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    pass


@lru_cache(maxsize=1)
def load_mnist(directory: Path, download: bool, mirrors: tuple[str, ...]) -> mnist.Mnist:
    """MNIST once per process, downloaded first if allowed and missing."""
    if download and mnist.missing_files(directory):
        log.info("MNIST missing from %s, downloading", directory)
        mnist.download(directory, mirrors)
    data = mnist.load(directory)
    log.info(
        "MNIST loaded from %s: %d train, %d test",
        directory,
        len(data.train_labels),
        len(data.test_labels),
    )
    return data


def prepare_storage(settings: Settings) -> None:
    """At worker start: model folder present, crash leftovers gone, registry complete."""
    settings.model_dir.mkdir(parents=True, exist_ok=True)
    store = ModelStore(settings.model_dir)
    store.remove_stale_temp_files()
    try:
        Registry.from_url(settings.redis_url, settings.key_prefix).rebuild_models(store)
    except Exception:  # Redis may come up later; the api rebuilds too
        log.exception("could not rebuild the model registry at start-up")


def _start(job: Job) -> Job | None:
    if job.status is not JobStatus.queued and job.status is not JobStatus.running:
        return None
    job.status, job.started_at, job.attempts = JobStatus.running, utcnow(), job.attempts + 1
    job.error = None
    return job


def run_job(job_id: UUID, settings: Settings, registry: Registry) -> JobStatus:
    """Train one job to its end; every outcome is written to the job record."""
    job = registry.get_job(job_id)
    if job is None:
        log.warning("job %s has no record, dropping it", job_id)
        return JobStatus.failed
    if job.status.finished:
        log.info("job %s already %s", job_id, job.status)
        return job.status
    if registry.cancel_requested(job_id):
        return registry.finish_job(job_id, JobStatus.cancelled).status

    job = registry.update_job(job_id, _start)
    if job.status is not JobStatus.running:
        return job.status
    log.info("job %s: training %s", job_id, job.params.model_dump_json())
    registry.truncate_history(job_id, 0)

    def on_epoch(state: training.TrainState, record: EpochRecord) -> None:
        registry.record_epoch(job_id, record)
        log.info(
            "job %s: epoch %d/%d cost %.4f (%.3fs)",
            job_id,
            record.epoch,
            job.params.epochs,
            record.cost,
            record.seconds,
        )
        if registry.cancel_requested(job_id):
            raise JobCancelled

    try:
        data = training.split(
            job.params,
            load_mnist(settings.mnist_dir, settings.mnist_download, settings.mnist_mirrors),
        )
        state = training.train(job.params, data, on_epoch=on_epoch)
        scale = job.params.input_scaling.factor
        train_acc = training.accuracy(state.weights, data.train_x, data.train_y, scale)
        test_acc = training.accuracy(state.weights, data.test_x, data.test_y, scale)
        store = ModelStore(settings.model_dir)
        meta = {
            "created_at": utcnow().isoformat(),
            "job_id": str(job_id),
            "params": job.params.model_dump(mode="json"),
            "train_accuracy": train_acc,
            "test_accuracy": test_acc,
            "input_scale": scale,
        }
        store.save(job_id, state.weights, meta)
        registry.put_model(model_info(store.load(job_id)))
    except JobCancelled:
        log.info("job %s cancelled at epoch boundary", job_id)
        return registry.finish_job(job_id, JobStatus.cancelled).status
    except Exception as exc:
        log.exception("job %s failed", job_id)
        error = f"{type(exc).__name__}: {exc}"
        return registry.finish_job(job_id, JobStatus.failed, error=error).status
    log.info("job %s succeeded: train %.4f test %.4f", job_id, train_acc, test_acc)
    return registry.finish_job(
        job_id,
        JobStatus.succeeded,
        model_id=job_id,
        train_accuracy=train_acc,
        test_accuracy=test_acc,
    ).status
