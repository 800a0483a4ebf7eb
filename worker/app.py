"""The Celery app: ``celery -A worker.app worker``."""

import logging
import os
from typing import Any

from celery.signals import worker_init, worker_process_init
from threadpoolctl import threadpool_limits

from shared.config import get_settings
from shared.logs import configure_logging
from shared.queue import make_celery

settings = get_settings()
app = make_celery(settings, main="worker")
app.conf.include = ["worker.tasks"]

log = logging.getLogger(__name__)


def blas_threads() -> int:
    """Threads each training process may use, so N processes on N cores don't fight."""
    return settings.blas_threads or max(1, (os.cpu_count() or 1) // settings.worker_concurrency)


@worker_init.connect
def _on_worker_start(**_: Any) -> None:
    configure_logging(settings.log_level)
    from worker.jobs import prepare_storage

    prepare_storage(settings)


@worker_process_init.connect
def _on_process_start(**_: Any) -> None:
    configure_logging(settings.log_level)
    threadpool_limits(limits=blas_threads(), user_api="blas")
    log.info("training process ready, %d BLAS thread(s)", blas_threads())
