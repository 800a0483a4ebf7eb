"""What every worker does besides training, at start and every
``RECOVERY_INTERVAL_SECONDS``: re-queue jobs whose process died, move unsettled sweeps
on, rebuild the registry and the corrections' index if Redis lost them, and remove
what crashed writers left in the artifact store.

Redis may also have lost *some* writes: a failover promotes a replica that had not
received the last ones yet, a restart loses what its disk had not. A worker notices
either by the server's ``run_id`` changing between two passes (:class:`ServerWatch`)
and then reconciles the registry and the corrections' index with the artifact store
(the files are the truth), so that a model registered just before a failover serves
again after it.
"""

import logging
from collections.abc import Callable
from uuid import UUID

import redis

from shared.jobs.store import JobStore
from shared.redisdb.client import server_id
from shared.schemas.jobs import Job, JobEnd, JobStatus
from shared.services import Services
from worker.run import requeue

log = logging.getLogger(__name__)


def _claim_orphan(services: Services, job_id: UUID) -> bool:
    """Move a running job back to queued, taking it from whoever had it (a new fencing
    token); true only for the caller whose transaction did it."""
    claim = requeue(count_attempt=True)
    claimed = False

    def change(job: Job) -> Job | None:
        nonlocal claimed  # the transaction may re-run: the last run decides
        changed = claim(job)
        claimed = changed is not None
        return changed

    services.jobs.update(job_id, change, also=lambda pipe: services.leases.supersede(pipe, job_id))
    return claimed


def recover_orphans(services: Services, send: Callable[[UUID], object]) -> list[UUID]:
    """Re-queue running jobs whose worker died (no lease), or fail them past the cap."""
    settings, jobs = services.settings, services.jobs
    recovered = []
    for job in jobs.active():
        if job.status is not JobStatus.running or services.leases.holder(job.id):
            continue
        if job.attempts >= settings.max_attempts:
            _give_up(services, jobs, job)
            continue
        if _claim_orphan(services, job.id):
            log.warning("job %s: its worker died at epoch %d, re-queueing", job.id, job.epoch)
            send(job.id)
            recovered.append(job.id)
    return recovered


def _give_up(services: Services, jobs: JobStore, job: Job) -> None:
    error = f"worker lost: gave up after {job.attempts} attempts"
    finished = jobs.finish(
        job.id,
        JobStatus.failed,
        JobEnd(error=error),
        only_from=(JobStatus.running,),
    )
    if finished.status is JobStatus.failed:
        log.warning("job %s: %s", job.id, error)
        try:
            services.checkpoints.remove(job.id)
        except OSError as exc:
            log.warning("job %s: could not remove its checkpoints: %s", job.id, exc)


def recover_sweeps(services: Services) -> None:
    """Advance every unsettled sweep: outcomes not yet recorded, trials not yet queued
    (a worker died between a trial's end and the next one's start, or the queue was
    full), numbers left pending, promotions not run."""
    for sweep_id in services.sweeps.store.active_ids():
        try:
            services.sweeps.advance(sweep_id)
        except Exception as exc:
            log.warning("sweep %s: recovery pass failed: %s", sweep_id, exc)


class ServerWatch:
    """Which Redis server process a worker talked to at its last pass."""

    def __init__(self) -> None:
        self.seen: str | None = None

    def changed(self, client: redis.Redis) -> bool:
        """True when the server is another one than at the last look (not at the first)."""
        now = server_id(client)
        before, self.seen = self.seen, now
        return before is not None and before != now


def recovery_pass(services: Services, watch: ServerWatch | None = None) -> None:
    """One pass; a failing part is logged and does not stop the others. With a
    ``watch``, a Redis that is another server than at the last pass (a failover, a
    restart) gets its registry and corrections' index reconciled with the artifacts."""
    try:
        services.artifacts.remove_stale()
    except OSError as exc:  # a storage problem must not stop orphan recovery
        log.warning("sweeping stale temp files failed: %s", exc)
    try:
        moved = watch is not None and watch.changed(services.redis)
        if moved:
            log.warning(
                "Redis is another server than at the last pass: reconciling with %s",
                services.artifacts.uri,
            )
        recover_orphans(services, services.queue.send)
        recover_sweeps(services)
        if moved or not services.registry.has_models():
            services.models.rebuild()
        if moved:
            services.corrections.rebuild()
        else:
            services.corrections.rebuild_if_lost()
    except Exception as exc:
        log.warning("recovery pass failed: %s", exc)


def prepare_storage(services: Services) -> None:
    """At worker start: crash leftovers gone, registry complete."""
    try:
        services.artifacts.remove_stale()
    except OSError as exc:
        log.warning("sweeping stale temp files failed: %s", exc)
    try:
        services.models.rebuild()
    except Exception:  # Redis may come up later; the api rebuilds too
        log.exception("could not rebuild the model registry at start-up")
