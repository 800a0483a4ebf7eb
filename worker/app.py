"""The Celery app: ``celery -A worker.app worker``."""

import logging
import os
import threading
from typing import Any
from uuid import UUID

from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutting_down
from threadpoolctl import threadpool_limits

from shared.config import get_settings
from shared.keys import Keys
from shared.leases import Leases
from shared.logs import configure_logging
from shared.queue import TRAIN_TASK, make_celery
from shared.redis_conn import connect

settings = get_settings()
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


def _leases() -> Leases:
    return Leases(connect(settings.redis_url), Keys(settings.key_prefix))


def _requeue(job_id: UUID) -> None:
    app.send_task(TRAIN_TASK, args=[str(job_id)], task_id=str(job_id))


def _recovery_loop() -> None:
    """Every worker looks for jobs whose process died (worker/jobs.py), re-creates the
    model registry from MODEL_DIR and the corrections' index from FEEDBACK_DIR if Redis
    lost them, and removes temp files that crashed writers left (a long-running worker
    would otherwise keep them until restarted)."""
    from shared.feedback import Corrections
    from worker.jobs import Stores, recover_orphans
    from worker.sweeps import recover_sweeps

    stores = Stores.connect(settings, retries=3)
    corrections = Corrections.connect(
        stores.jobs.redis, stores.jobs.keys, settings.feedback_root, settings.feedback_max
    )
    while True:
        try:
            stores.files.remove_stale_temp_files()
        except OSError as exc:  # a storage problem must not stop orphan recovery
            log.warning("sweeping stale temp files failed: %s", exc)
        try:
            recover_orphans(stores, settings, _requeue)
            recover_sweeps(stores, settings, _requeue)  # top up sweeps a dead process left
            if not stores.registry.has_models():
                stores.registry.rebuild(stores.files)
            corrections.rebuild_if_lost()
        except Exception as exc:
            log.warning("recovery pass failed: %s", exc)
        if _stop_recovery.wait(settings.recovery_interval_seconds):
            return


@worker_init.connect
def _on_worker_start(**_: Any) -> None:
    configure_logging(settings.log_level, settings.log_format)
    from worker.jobs import prepare_storage

    prepare_storage(settings)


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    try:
        _leases().mark_worker_stopping(sender.hostname, stopping=False)
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
            _leases().mark_worker_stopping(sender)
        except Exception as exc:
            log.warning("could not announce shutdown: %s", exc)


@worker_process_init.connect
def _on_process_start(**_: Any) -> None:
    configure_logging(settings.log_level, settings.log_format)
    threadpool_limits(limits=blas_threads(), user_api="blas")
    log.info("training process ready, %d BLAS thread(s)", blas_threads())
