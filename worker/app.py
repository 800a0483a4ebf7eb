"""The Celery app: ``celery -A worker.app worker``."""

import logging
import os
import sys
import threading
from functools import lru_cache
from typing import Any

from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutting_down
from threadpoolctl import threadpool_limits

from shared.config import InvalidSettings, get_settings
from shared.jobs.queue import make_celery
from shared.logs import configure_logging
from shared.services import Misconfigured, Services
from worker.recovery import ServerWatch, prepare_storage, recovery_pass

try:
    settings = get_settings()
except InvalidSettings as exc:  # one clear line, and no worker that cannot work
    raise SystemExit(f"error: {exc}") from None
app = make_celery(settings, main="worker")
app.conf.include = ["worker.tasks"]
app.conf.task_soft_time_limit = settings.job_time_limit_seconds
app.conf.task_time_limit = settings.job_time_limit_seconds + 60

log = logging.getLogger(__name__)
_stop_recovery = threading.Event()
_stopping = False


def blas_threads() -> int:
    """Threads each training process may use, so N processes on N cores don't fight."""
    return settings.blas_threads or max(1, (os.cpu_count() or 1) // settings.worker_concurrency)


@lru_cache(maxsize=1)
def services() -> Services:
    """The main process's clients (recovery, shutdown flags): quick to give up, since
    the next recovery pass tries again."""
    return Services.connect(settings, retries=3, celery=app)


def _recovery_loop() -> None:
    """Every worker looks for jobs whose process died, moves sweeps on, re-creates the
    model registry and the corrections' index if Redis lost them, and removes what
    crashed writers left (worker/recovery.py)."""
    watch = ServerWatch()
    while True:
        recovery_pass(services(), watch)
        if _stop_recovery.wait(settings.recovery_interval_seconds):
            return


@worker_init.connect
def _on_worker_start(**_: Any) -> None:
    configure_logging(settings.log_level, settings.log_format)
    try:
        services().preflight()
    except Misconfigured as exc:  # one clear line, and no worker that cannot work
        log.critical("%s", exc)
        sys.stderr.write(f"error: {exc}\n")
        os._exit(2)
    prepare_storage(services())


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    try:
        services().leases.mark_worker_stopping(sender.hostname, stopping=False)
    except Exception as exc:
        log.warning("could not clear the stopping flag: %s", exc)
    threading.Thread(target=_recovery_loop, name="orphan-recovery", daemon=True).start()


@worker_shutting_down.connect
def _on_worker_stopping(sender: str | None = None, **_: Any) -> None:
    """Tell this worker's jobs to checkpoint and go back to the queue.

    Celery sends this from its signal handler, which a second signal (Ctrl-C, then
    SIGTERM) can re-enter: only the first call may take locks (Event, Redis pool),
    or the nested one deadlocks on them.
    """
    global _stopping
    if _stopping:
        return
    _stopping = True
    _stop_recovery.set()
    if sender:
        try:
            services().leases.mark_worker_stopping(sender)
        except Exception as exc:
            log.warning("could not announce shutdown: %s", exc)


@worker_process_init.connect
def _on_process_start(**_: Any) -> None:
    configure_logging(settings.log_level, settings.log_format)
    threadpool_limits(limits=blas_threads(), user_api="blas")
    log.info("training process ready, %d BLAS thread(s)", blas_threads())
