"""Celery tasks: thin wrappers that hand a job id to :mod:`worker.jobs`."""

from functools import lru_cache
from uuid import UUID

from celery import Task
from celery.exceptions import Reject

from shared.queue import TRAIN_TASK
from shared.schemas import JobStatus
from worker.app import app, settings
from worker.jobs import Stores, run_job
from worker.sweeps import trial_ended


@lru_cache(maxsize=1)
def stores() -> Stores:
    """One set of clients per training process (made after the fork)."""
    return Stores.connect(settings)


def _send(job_id: UUID) -> None:
    app.send_task(TRAIN_TASK, args=[str(job_id)], task_id=str(job_id))


@app.task(name=TRAIN_TASK, bind=True)
def train(self: Task, job_id: str) -> str:
    """Train the job whose record the API wrote; the outcome goes to that record."""
    status = run_job(UUID(job_id), settings, stores(), worker=self.request.hostname or "worker")
    if status.finished:  # a sweep's trial: record it, queue the next one
        trial_ended(UUID(job_id), settings, stores(), send=_send)
    if status is JobStatus.queued:  # warm shutdown: checkpointed, put the message back
        raise Reject("worker stopping; job checkpointed", requeue=True)
    return status.value
