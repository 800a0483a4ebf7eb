"""Celery tasks: thin wrappers that hand a job id to :mod:`worker.jobs`."""

from functools import lru_cache
from uuid import UUID

from shared.queue import TRAIN_TASK
from shared.registry import Registry
from worker.app import app, settings
from worker.jobs import run_job


@lru_cache(maxsize=1)
def registry() -> Registry:
    return Registry.from_url(settings.redis_url, settings.key_prefix)


@app.task(name=TRAIN_TASK)
def train(job_id: str) -> str:
    """Train the job whose record the API wrote; the outcome goes to that record."""
    return run_job(UUID(job_id), settings, registry()).value
