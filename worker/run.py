"""What a worker does with one job id: the lifecycle around the trainer
(shared/ml/training.py). Kept apart from the Celery task so that it reads (and tests)
as plain Python.

Reliability, in short (docs/operations.md "Failure modes" has the promises):

- A job is trained only by the process holding its **lease** (renewed by a heartbeat
  thread); taking it also takes the job's next **fencing token**, and every write of
  the job's state (progress, history rows, checkpoints, the model's registration, the
  final status) is accepted only while that token is current. A process that was cut
  off past its lease and comes back finds itself superseded at its first write, stops
  at once and writes nothing more.
- A **checkpoint** is written every ``CHECKPOINT_SECONDS`` at an epoch boundary; a
  later attempt resumes from it, history cut back to match.
- Orphans (a lease expired: the process died) are re-queued by every worker's recovery
  pass (worker/recovery.py), or failed after ``MAX_ATTEMPTS``.
- On a warm shutdown the job checkpoints at its next epoch boundary and goes back to
  the queue.

A run is four steps: :meth:`Run.resume` (the checkpoint), :meth:`Run.prepare` (the
data, a fine-tune's corrections and parent), :meth:`Run.train` (with the epoch hooks of
worker/hooks.py), :meth:`Run.publish` (evaluate, commit, write and register the model,
the promotion gate), and one place that writes how it ended (:meth:`Run.end`).
"""

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar
from uuid import UUID, uuid4

import redis
from celery.exceptions import SoftTimeLimitExceeded

from shared.artifacts.base import StoreUnavailable
from shared.data import mnist
from shared.errors import public_error
from shared.feedback import finetune
from shared.jobs.leases import Fence, Superseded
from shared.logs import job_context
from shared.ml import drift, evaluation, training
from shared.schemas.common import utcnow
from shared.schemas.jobs import Job, JobEnd, JobStatus
from shared.schemas.models import ModelMeta
from shared.services import Services
from worker.hooks import (
    CancelWatch,
    CheckpointTimer,
    Ending,
    EpochHooks,
    Heartbeat,
    Hook,
    LeaseWatch,
    Progress,
    PruneWatch,
    Stop,
    StoppingWatch,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


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


def run_job(job_id: UUID, services: Services, worker: str = "local") -> JobStatus:
    """Train one job to its end; every outcome is written to the job record.

    Returns the job's status; ``queued`` means "put the message back" (warm shutdown),
    ``running`` "leave it": another process holds it, or Redis stayed away longer than
    the clients' retries, and the orphan recovery resumes it from its checkpoint.
    Every line logged meanwhile carries the job id.
    """
    with job_context(job_id):
        try:
            return _run_job(job_id, services, worker)
        except Superseded as exc:
            log.warning("job %s: another worker holds it now (%s); stopping here", job_id, exc)
            return JobStatus.running
        except redis.RedisError as exc:
            log.error(
                "job %s: Redis unreachable beyond the retries (%s); checkpoint kept", job_id, exc
            )
            return JobStatus.running


def _run_job(job_id: UUID, services: Services, worker: str) -> JobStatus:
    settings, jobs = services.settings, services.jobs
    job = jobs.get(job_id)
    if job is None:
        log.warning("job %s has no record, dropping it", job_id)
        return JobStatus.failed
    if job.status.finished:
        log.info("job %s already %s", job_id, job.status.value)
        return job.status
    if job.cancel_requested:
        return jobs.finish(job_id, JobStatus.cancelled).status
    holder = f"{worker}:{os.getpid()}:{uuid4().hex[:8]}"
    fence = acquire_lease(services, job_id, holder)
    if fence is None:
        log.info("job %s is held by %s; leaving it", job_id, services.leases.holder(job_id))
        return job.status
    try:
        beat = Heartbeat(
            services.leases,
            job_id,
            holder,
            worker,
            every=settings.heartbeat_seconds,
            ttl=settings.lease_seconds,
        )
        with beat:
            return Run(services, job_id, fence, beat).execute()
    finally:
        services.leases.release(job_id, holder)


def acquire_lease(services: Services, job_id: UUID, holder: str) -> Fence | None:
    """Take the job's lease, waiting up to one lease period for a dead holder's to expire."""
    settings = services.settings
    deadline = time.monotonic() + settings.lease_seconds + settings.heartbeat_seconds
    while True:
        fence = services.leases.acquire(job_id, holder, settings.lease_seconds)
        if fence is not None:
            return fence
        if time.monotonic() > deadline:
            return None
        time.sleep(min(0.5, settings.heartbeat_seconds))


def _start(job: Job) -> Job | None:
    if job.status not in (JobStatus.queued, JobStatus.running):
        return None
    job.status, job.started_at, job.attempts = JobStatus.running, utcnow(), job.attempts + 1
    job.error = None
    return job


def requeue(count_attempt: bool) -> Callable[[Job], Job | None]:
    """A change that puts a running job back in the queue (an orphan counts an attempt,
    a warm shutdown does not)."""

    def change(job: Job) -> Job | None:
        if job.status is not JobStatus.running:
            return None
        job.status = JobStatus.queued
        if not count_attempt:
            job.attempts -= 1
        return job

    return change


@dataclass
class Prepared:
    data: training.Dataset
    tune: finetune.Setup | None
    state: training.TrainState | None


class Run:
    """One attempt at a job by the holder of ``fence``."""

    def __init__(self, services: Services, job_id: UUID, fence: Fence, beat: Heartbeat) -> None:
        self.services, self.settings = services, services.settings
        self.jobs, self.job_id, self.fence, self.beat = services.jobs, job_id, fence, beat

    def execute(self) -> JobStatus:
        job = self.jobs.update(self.job_id, _start, fence=self.fence)
        if job.status is not JobStatus.running:
            log.info("job %s already %s", self.job_id, job.status.value)
            return job.status
        if job.attempts > self.settings.max_attempts:
            error = f"worker lost: gave up after {self.settings.max_attempts} attempts"
            return self.end(JobStatus.failed, JobEnd(error=error))
        log.info("job %s: attempt %d, %s", self.job_id, job.attempts, job.params.model_dump_json())
        try:
            prepared = self.prepare(job, self.resume())
            state = self.train(job, prepared)
            end = self.publish(job, prepared, state)
        except Stop as stop:
            return self.stopped(stop)
        except SoftTimeLimitExceeded:
            log.error("job %s exceeded its time limit", self.job_id)
            error = f"time limit exceeded ({self.settings.job_time_limit_seconds:g} s)"
            return self.end(JobStatus.failed, JobEnd(error=error))
        except (redis.RedisError, Superseded):
            raise  # not the job's fault, or not ours any more: run_job leaves it
        except Exception as exc:
            log.exception("job %s failed", self.job_id)
            return self.end(JobStatus.failed, JobEnd(error=public_error(exc)))
        log.info(
            "job %s succeeded: train %.4f test %.4f",
            self.job_id,
            end.train_accuracy,
            end.test_accuracy,
        )
        status = self.end(JobStatus.succeeded, end)
        if self.settings.model_retention is not None:
            try:
                self.services.models.apply_retention(self.settings.model_retention)
            except Exception:  # the job has succeeded; retention tries again after the next
                log.exception("retention failed")
        return status

    def resume(self) -> training.TrainState | None:
        """The newest checkpoint, and the job's progress set back to it."""
        state = self.services.checkpoints.load(self.job_id)
        self.jobs.reset_progress(self.job_id, state.epoch if state else 0, fence=self.fence)
        if state:
            log.info("job %s: resuming from checkpoint at epoch %d", self.job_id, state.epoch)
        return state

    def prepare(self, job: Job, state: training.TrainState | None) -> Prepared:
        """The job's data (MNIST split as its parameters say, plus corrections for a
        fine-tune) and where it starts (the checkpoint, a fine-tune's parent, or anew)."""
        s = self.settings
        tune = self.retrying(
            lambda: finetune.prepare(
                job,
                self.jobs,
                self.services.models.files,
                self.services.feedback_files,
                self.fence,
            )
        )
        data = training.split(
            job.params, load_mnist(s.mnist_dir, s.mnist_download, s.mnist_mirrors)
        )
        if tune is not None:
            data = finetune.with_corrections(data, tune.corrections)
            if state is None and tune.parent is not None:
                state = finetune.initial_state(tune.parent, job.params)
        return Prepared(data, tune, state)

    def hooks(self, job: Job) -> EpochHooks:
        hooks: list[Hook] = [
            Progress(self.jobs, self.job_id, job.params.epochs, self.fence),
            LeaseWatch(self.beat),
            CancelWatch(lambda: self.jobs.cancel_requested(self.job_id)),
        ]
        monitor = self.services.sweeps.monitor(job)  # None unless a sweep's trial
        if monitor is not None:
            hooks.append(PruneWatch(monitor, job.params.epochs))
        hooks += [
            CheckpointTimer(
                self.services.checkpoints,
                self.job_id,
                job.params.epochs,
                self.fence,
                self.settings.checkpoint_seconds,
                self.beat.stopping,
            ),
            StoppingWatch(self.beat.stopping),
        ]
        return EpochHooks(hooks)

    def train(self, job: Job, prepared: Prepared) -> training.TrainState:
        return training.train(
            job.params,
            prepared.data,
            state=prepared.state,
            on_epoch=self.hooks(job),
            early_stopping=job.early_stopping,
        )

    def publish(self, job: Job, prepared: Prepared, state: training.TrainState) -> JobEnd:
        """Evaluate, pass the point of no return (unless a cancel came first), write and
        register the model, run the promotion gate; what the job record gets."""
        data, tune = prepared.data, prepared.tune
        scale = job.params.input_scaling.factor
        train_acc = training.accuracy(state.weights, data.train_x, data.train_y, scale)
        test_acc = training.accuracy(state.weights, data.test_x, data.test_y, scale)
        evaluated = evaluation.evaluate(state.weights, data.test_x, data.test_y, scale)
        lineage = tune.card(state.weights, scale) if tune is not None else None
        profile = drift.reference_profile(  # what drift compares served inputs with
            data.train_x, data.test_x, state.weights, scale, source="training", now=utcnow()
        )
        meta = ModelMeta(
            created_at=utcnow(),
            job_id=self.job_id,
            params=job.params,
            train_accuracy=train_acc,
            test_accuracy=test_acc,
            input_scale=scale,
            confusion=evaluated.confusion,
            errors=evaluated.errors,
            reference_profile=profile,
            **(lineage.model_dump() if lineage is not None else {}),
        )
        if not self.jobs.commit(self.job_id, fence=self.fence):  # one transaction with cancel
            raise Stop(Ending.cancelled, state.epoch)
        info = self.retrying(
            lambda: self.services.models.publish(self.job_id, state.weights, meta, self.fence)
        )
        promotion = None
        if job.promote is not None:
            promotion = self.services.models.aliases.promote_if_better(
                info,
                job.promote,
                finetune.candidate_value(job.promote.metric, info.test_accuracy or 0.0, meta),
                max_test_drop=self.settings.promotion_max_test_drop,
                incumbent_metric=(
                    tune.gate_measure(self.services.models.files) if tune is not None else None
                ),
            )
            log.info(
                "job %s: promotion gate for %s: %s",
                self.job_id,
                job.promote.alias,
                promotion.reason,
            )
        best_epoch = stopped_at = None
        if job.early_stopping is not None and state.watch is not None:
            best_epoch = state.watch.best_epoch
            if training.stopped_early(state, job.early_stopping):
                stopped_at = state.epoch
        return JobEnd(
            model_id=self.job_id,
            train_accuracy=info.train_accuracy,
            test_accuracy=info.test_accuracy,
            promotion=promotion,
            best_epoch=best_epoch,
            stopped_at_epoch=stopped_at,
        )

    def stopped(self, stop: Stop) -> JobStatus:
        """A run an epoch hook stopped."""
        if stop.ending is Ending.lost:
            log.warning("job %s: lease lost to another worker, stopping here", self.job_id)
            return JobStatus.running
        if stop.ending is Ending.stopping:
            log.info("job %s: worker stopping, back to the queue", self.job_id)
            return self.jobs.update(
                self.job_id, requeue(count_attempt=False), fence=self.fence
            ).status
        if stop.ending is Ending.pruned:
            log.info("job %s: trial pruned after epoch %d", self.job_id, stop.epoch)
            return self.end(JobStatus.cancelled, JobEnd(pruned_at_epoch=stop.epoch))
        log.info("job %s cancelled at an epoch boundary", self.job_id)
        return self.end(JobStatus.cancelled)

    def end(self, status: JobStatus, end: JobEnd | None = None) -> JobStatus:
        """The final state first (fenced); only then are the checkpoints expendable."""
        final = self.jobs.finish(self.job_id, status, end, fence=self.fence).status
        try:
            self.services.checkpoints.remove(self.job_id)
        except (OSError, StoreUnavailable) as exc:  # the record already says how it ended
            log.warning("job %s: could not remove its checkpoints: %s", self.job_id, exc)
        return final

    def retrying(self, step: Callable[[], T]) -> T:
        """``step`` again with backoff while the artifact store is away, for up to
        ``STORE_RETRY_SECONDS``: a blip of the store does not fail a job."""
        deadline = time.monotonic() + self.settings.store_retry_seconds
        pause = 0.5
        while True:
            try:
                return step()
            except StoreUnavailable as exc:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("job %s: the store is away (%s); retrying", self.job_id, exc)
                self.fence.verify(self.jobs.redis)  # still ours?
                time.sleep(pause)
                pause = min(pause * 2, 10.0)
