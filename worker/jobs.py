"""What a worker does with one job id: the lifecycle around :func:`shared.training.train`.

Kept apart from the Celery task so that it reads (and tests) as plain Python.

Reliability, in short (README "Failure modes" has the promises):

- A job is trained only by the process holding its **lease** (a Redis key with a
  TTL, renewed every ``HEARTBEAT_SECONDS`` by a thread). A second delivery of the
  same job waits one lease period for it, then leaves the job alone.
- A **checkpoint** (weights, momentum, learning rate, epoch, RNG state, history)
  is written atomically every ``CHECKPOINT_SECONDS`` at an epoch boundary; any
  later attempt resumes from it, history cut back to match.
- :func:`recover_orphans`, run by every worker at start and every
  ``RECOVERY_INTERVAL_SECONDS``, re-queues running jobs whose lease has expired
  (their process died), or fails them after ``MAX_ATTEMPTS``.
- On a warm shutdown the job checkpoints at its next epoch boundary and is put
  back on the queue (the task returns ``queued``; see worker/tasks.py).
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import redis
from celery.exceptions import SoftTimeLimitExceeded

from shared import evaluation, finetune, mnist, training
from shared.config import Settings
from shared.errors import public_error
from shared.jobstore import JobStore
from shared.keys import Keys
from shared.leases import Leases
from shared.logs import job_context
from shared.redis_conn import WORKER_RETRIES, connect
from shared.registry import ModelRegistry, model_info
from shared.schemas import EpochRecord, Job, JobStatus, ModelMeta, utcnow
from shared.store import ModelStore
from worker.sweeps import TrialPruned, trial_monitor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stores:
    """What a worker reads and writes: job records, leases, the registry, the files."""

    jobs: JobStore
    leases: Leases
    registry: ModelRegistry
    files: ModelStore

    @classmethod
    def connect(cls, settings: Settings, retries: int = WORKER_RETRIES) -> "Stores":
        """Clients that ride out a Redis restart of up to about half a minute."""
        client = connect(settings.redis_url, retries=retries)
        keys = Keys(settings.key_prefix)
        files = ModelStore(settings.model_dir)
        return cls(JobStore(client, keys), Leases(client, keys), ModelRegistry(client, keys), files)


class JobCancelled(Exception):
    pass


class WorkerStopping(Exception):
    pass


class LeaseLost(Exception):
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
        ModelRegistry(connect(settings.redis_url), Keys(settings.key_prefix)).rebuild(store)
    except Exception:  # Redis may come up later; the api rebuilds too
        log.exception("could not rebuild the model registry at start-up")


class Heartbeat:
    """Renews the job's lease from a thread while the main thread trains."""

    def __init__(
        self, leases: Leases, job_id: UUID, token: str, worker: str, settings: Settings
    ) -> None:
        self.leases, self.job_id, self.token, self.worker = leases, job_id, token, worker
        self.settings = settings
        self.lost = threading.Event()
        self.stopping = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.settings.heartbeat_seconds):
            try:
                if not self.leases.renew(self.job_id, self.token, self.settings.lease_seconds):
                    self.lost.set()
                if self.leases.worker_stopping(self.worker):
                    self.stopping.set()
            except Exception as exc:  # Redis away for a moment: the lease TTL decides
                log.warning("job %s: heartbeat failed: %s", self.job_id, exc)


def acquire_lease(leases: Leases, job_id: UUID, token: str, settings: Settings) -> bool:
    """Take the job's lease, waiting up to one lease period for a dead holder's to expire."""
    deadline = time.monotonic() + settings.lease_seconds + settings.heartbeat_seconds
    while True:
        if leases.acquire(job_id, token, settings.lease_seconds):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(min(0.5, settings.heartbeat_seconds))


def _start(job: Job) -> Job | None:
    if job.status not in (JobStatus.queued, JobStatus.running):
        return None
    job.status, job.started_at, job.attempts = JobStatus.running, utcnow(), job.attempts + 1
    job.error = None
    return job


def run_job(job_id: UUID, settings: Settings, stores: Stores, worker: str = "local") -> JobStatus:
    """Train one job to its end; every outcome is written to the job record.

    Returns the job's status; ``queued`` means "put the message back" (warm shutdown),
    ``running`` "leave it": another process holds it, or Redis stayed away longer than
    the clients' retries, and the orphan recovery resumes it from its checkpoint.
    Every line logged meanwhile carries the job id.
    """
    with job_context(job_id):
        try:
            return _run_job(job_id, settings, stores, worker)
        except redis.RedisError as exc:
            log.error(
                "job %s: Redis unreachable beyond the retries (%s); checkpoint kept", job_id, exc
            )
            return JobStatus.running


def _run_job(job_id: UUID, settings: Settings, stores: Stores, worker: str) -> JobStatus:
    jobs = stores.jobs
    job = jobs.get(job_id)
    if job is None:
        log.warning("job %s has no record, dropping it", job_id)
        return JobStatus.failed
    if job.status.finished:
        log.info("job %s already %s", job_id, job.status.value)
        return job.status
    if job.cancel_requested:
        return jobs.finish(job_id, JobStatus.cancelled).status

    token = f"{worker}:{os.getpid()}:{uuid4().hex[:8]}"
    if not acquire_lease(stores.leases, job_id, token, settings):
        log.info("job %s is held by %s; leaving it", job_id, stores.leases.holder(job_id))
        return job.status
    try:
        with Heartbeat(stores.leases, job_id, token, worker, settings) as beat:
            return _run_leased(job_id, settings, stores, beat)
    finally:
        stores.leases.release(job_id, token)


def _run_leased(job_id: UUID, settings: Settings, stores: Stores, beat: Heartbeat) -> JobStatus:
    jobs, files = stores.jobs, stores.files
    job = jobs.update(job_id, _start)
    if job.status is not JobStatus.running:
        log.info("job %s already %s", job_id, job.status.value)
        return job.status

    def finish(status: JobStatus, **fields: Any) -> JobStatus:
        """The final state first; only then is the checkpoint expendable."""
        final = jobs.finish(job_id, status, **fields).status
        try:
            files.remove_checkpoint(job_id)
        except OSError as exc:  # a read-only volume: the record already says why
            log.warning("job %s: could not remove its checkpoint: %s", job_id, exc)
        return final

    if job.attempts > settings.max_attempts:
        return finish(
            JobStatus.failed, error=f"worker lost: gave up after {settings.max_attempts} attempts"
        )

    state = files.load_checkpoint(job_id)
    jobs.reset_progress(job_id, state.epoch if state else 0)
    if state:
        log.info("job %s: resuming from checkpoint at epoch %d", job_id, state.epoch)
    log.info("job %s: attempt %d, %s", job_id, job.attempts, job.params.model_dump_json())
    last_checkpoint = time.monotonic()
    monitor = trial_monitor(job, settings, stores)  # None unless the job is a sweep's trial

    def on_epoch(state: training.TrainState, record: EpochRecord) -> None:
        nonlocal last_checkpoint
        jobs.record_epoch(job_id, record)
        log.info(
            "job %s: epoch %d/%d cost %.4f (%.3fs)",
            job_id,
            record.epoch,
            job.params.epochs,
            record.cost,
            record.seconds,
        )
        if beat.lost.is_set():
            raise LeaseLost
        if jobs.cancel_requested(job_id):
            raise JobCancelled
        if (
            monitor is not None
            and monitor.should_prune(record.epoch, record.val_accuracy)
            and record.epoch < job.params.epochs  # a finished trial completes: no waste
        ):
            raise TrialPruned(record.epoch)
        due = time.monotonic() - last_checkpoint >= settings.checkpoint_seconds
        if state.epoch < job.params.epochs and (due or beat.stopping.is_set()):
            files.save_checkpoint(job_id, state)
            last_checkpoint = time.monotonic()
        if beat.stopping.is_set():
            raise WorkerStopping

    try:
        tune = finetune.prepare(job, jobs, files, settings.feedback_root)
        data = training.split(
            job.params,
            load_mnist(settings.mnist_dir, settings.mnist_download, settings.mnist_mirrors),
        )
        if tune is not None:
            data = finetune.with_corrections(data, tune.corrections)
            if state is None and tune.parent is not None:
                state = finetune.initial_state(tune.parent, job.params)
        state = training.train(
            job.params, data, state=state, on_epoch=on_epoch, early_stopping=job.early_stopping
        )
        scale = job.params.input_scaling.factor
        train_acc = training.accuracy(state.weights, data.train_x, data.train_y, scale)
        test_acc = training.accuracy(state.weights, data.test_x, data.test_y, scale)
        evaluated = evaluation.evaluate(state.weights, data.test_x, data.test_y, scale)
        meta = ModelMeta(
            created_at=utcnow(),
            job_id=job_id,
            params=job.params,
            train_accuracy=train_acc,
            test_accuracy=test_acc,
            input_scale=scale,
            confusion=evaluated.confusion,
            errors=evaluated.errors,
            **(tune.card(state.weights, scale) if tune is not None else {}),
        )
        if not jobs.commit(job_id):  # one transaction with the API's cancel: one winner
            raise JobCancelled
        files.save(job_id, state.weights, meta)
        info = model_info(files.load(job_id))
        stores.registry.put_model(info)
        promotion = None
        if job.promote is not None:
            promotion = stores.registry.promote_if_better(
                info,
                job.promote,
                finetune.candidate_value(job.promote.metric, test_acc, meta),
                max_test_drop=settings.promotion_max_test_drop,
                incumbent_metric=tune.gate_measure(files) if tune is not None else None,
            )
            log.info(
                "job %s: promotion gate for %s: %s", job_id, job.promote.alias, promotion.reason
            )
    except JobCancelled:
        log.info("job %s cancelled at an epoch boundary", job_id)
        return finish(JobStatus.cancelled)
    except TrialPruned as exc:
        log.info("job %s: trial pruned after epoch %d", job_id, exc.epoch)
        return finish(JobStatus.cancelled, pruned_at_epoch=exc.epoch)
    except WorkerStopping:
        log.info("job %s: worker stopping, back to the queue", job_id)
        return jobs.update(job_id, _requeue(count_attempt=False)).status
    except LeaseLost:
        log.warning("job %s: lease lost to another worker, stopping here", job_id)
        return JobStatus.running
    except SoftTimeLimitExceeded:
        log.error("job %s exceeded its time limit", job_id)
        error = f"time limit exceeded ({settings.job_time_limit_seconds:g} s)"
        return finish(JobStatus.failed, error=error)
    except redis.RedisError:
        raise  # not the job's fault: run_job leaves it, checkpoint kept, for recovery
    except Exception as exc:
        log.exception("job %s failed", job_id)
        return finish(JobStatus.failed, error=public_error(exc))
    log.info("job %s succeeded: train %.4f test %.4f", job_id, train_acc, test_acc)
    status = finish(
        JobStatus.succeeded,
        model_id=job_id,
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        promotion=promotion,
        **_early_stopping_outcome(job, state),
    )
    if settings.model_retention is not None:
        _retain(settings.model_retention, stores)
    return status


def _early_stopping_outcome(job: Job, state: training.TrainState) -> dict[str, Any]:
    """The job record's ``best_epoch`` and ``stopped_at_epoch`` under early stopping."""
    if job.early_stopping is None or state.watch is None:
        return {}
    stopped = training.stopped_early(state, job.early_stopping)
    return {
        "best_epoch": state.watch.best_epoch,
        "stopped_at_epoch": state.epoch if stopped else None,
    }


def _retain(keep: int, stores: Stores) -> None:
    """MODEL_RETENTION: never a model an alias points at or an active job starts from."""
    try:
        parents = {job.init_model_id for job in stores.jobs.active() if job.init_model_id}
        stores.registry.apply_retention(keep, stores.files, protected=parents)
    except Exception:  # the job has succeeded; retention tries again after the next one
        log.exception("retention failed")


def _requeue(count_attempt: bool) -> Callable[[Job], Job | None]:
    def change(job: Job) -> Job | None:
        if job.status is not JobStatus.running:
            return None
        job.status = JobStatus.queued
        if not count_attempt:
            job.attempts -= 1  # a graceful stop is not a failed attempt
        return job

    return change


def _claim_orphan(jobs: JobStore, job_id: UUID) -> bool:
    """Move a running job back to queued; true only for the caller whose transaction did it."""
    requeue = _requeue(count_attempt=True)
    claimed = False

    def claim(job: Job) -> Job | None:
        nonlocal claimed  # the transaction may re-run: the last run decides
        changed = requeue(job)
        claimed = changed is not None
        return changed

    jobs.update(job_id, claim)
    return claimed


def recover_orphans(
    stores: Stores, settings: Settings, requeue: Callable[[UUID], object]
) -> list[UUID]:
    """Re-queue running jobs whose worker died (no lease), or fail them past the cap."""
    recovered = []
    for job in stores.jobs.active():
        if job.status is not JobStatus.running or stores.leases.holder(job.id):
            continue
        if job.attempts >= settings.max_attempts:
            error = f"worker lost: gave up after {job.attempts} attempts"
            finished = stores.jobs.finish(
                job.id, JobStatus.failed, only_from=(JobStatus.running,), error=error
            )
            if finished.status is JobStatus.failed:
                log.warning("job %s: %s", job.id, error)
                try:
                    stores.files.remove_checkpoint(job.id)
                except OSError as exc:
                    log.warning("job %s: could not remove its checkpoint: %s", job.id, exc)
            continue
        if _claim_orphan(stores.jobs, job.id):
            log.warning("job %s: its worker died at epoch %d, re-queueing", job.id, job.epoch)
            requeue(job.id)
            recovered.append(job.id)
    return recovered
