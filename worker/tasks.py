"""Celery tasks: thin wrappers that hand a job id to :mod:`worker.run`."""

import logging
from functools import lru_cache
from uuid import UUID

from celery import Task
from celery.exceptions import Reject

from shared.jobs.queue import TRAIN_TASK
from shared.redisdb.client import WORKER_RETRIES
from shared.schemas.jobs import JobStatus
from shared.services import Services
from worker.app import app, settings
from worker.run import run_job

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def services() -> Services:
    """One set of clients and services per training process (made after the fork), so
    that the sweeps' journals are read once per process, not per trial step."""
    return Services.connect(settings, retries=WORKER_RETRIES, celery=app)


@app.task(name=TRAIN_TASK, bind=True)
def train(self: Task, job_id: str) -> str:
    """Train the job whose record the API wrote; the outcome goes to that record."""
    status = run_job(UUID(job_id), services(), worker=self.request.hostname or "worker")
    if status.finished:
        trial_ended(UUID(job_id))
    if status is JobStatus.queued:  # warm shutdown: checkpointed, put the message back
        raise Reject("worker stopping; job checkpointed", requeue=True)
    return status.value


def trial_ended(job_id: UUID) -> None:
    """After a job ended: if it is a sweep's trial, move its sweep on (queue the next
    trial, or finish it). A failure here is left to the next recovery pass."""
    try:
        job = services().jobs.get(job_id)
        if job is not None and job.sweep_id is not None:
            services().sweeps.advance(job.sweep_id)
    except Exception:
        log.exception("job %s: could not advance its sweep", job_id)
