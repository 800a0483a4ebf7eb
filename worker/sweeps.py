"""What a worker does for sweeps (shared/sweeps.py has the sweep logic itself):

- beside a trial's training, :func:`trial_monitor` reports each epoch to Optuna and
  :class:`TrialPruned` stops the run at that epoch boundary when the pruner says so;
- when a trial's job has ended, :func:`trial_ended` advances its sweep (records the
  outcome, queues the next trial, or finishes the sweep);
- every recovery pass, :func:`recover_sweeps` advances every unsettled sweep, which
  finishes whatever a process that died left half done.

Sweep errors never fail a job: the job's outcome is in its record already, and the
next recovery pass advances the sweep again.
"""

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING
from uuid import UUID

from shared.config import Settings
from shared.schemas import Job
from shared.sweeps import Sweeper, TrialMonitor

if TYPE_CHECKING:  # worker.jobs imports this module
    from worker.jobs import Stores

log = logging.getLogger(__name__)


class TrialPruned(Exception):
    def __init__(self, epoch: int) -> None:
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch


def sweeper(stores: "Stores", settings: Settings, send: Callable[[UUID], object]) -> Sweeper:
    return Sweeper(stores.jobs.redis, stores.jobs.keys, settings.redis_url, send)


def _no_send(job_id: UUID) -> None:
    raise RuntimeError("a trial's monitor queues no jobs")


def trial_monitor(job: Job, settings: Settings, stores: "Stores") -> TrialMonitor | None:
    """For a sweep's trial (else ``None``): marks the sweep running and follows the
    trial's pruner. A sweep that cannot be read leaves the trial to train unpruned."""
    if job.sweep_id is None or job.trial is None:
        return None
    try:
        sweeps = sweeper(stores, settings, _no_send)
        sweeps.mark_started(job.sweep_id)
        sweep = sweeps.store.get(job.sweep_id)
        trial = sweep.trial(job.trial) if sweep else None
        if sweep is None or trial is None:
            log.warning("job %s: its sweep or trial record is missing", job.id)
            return None
        return TrialMonitor(sweeps, sweep, trial)
    except Exception:
        log.exception("job %s: could not follow its sweep's pruner", job.id)
        return None


def trial_ended(
    job_id: UUID, settings: Settings, stores: "Stores", send: Callable[[UUID], object]
) -> None:
    """After a job ended: if it is a trial, move its sweep on."""
    try:
        job = stores.jobs.get(job_id)
        if job is None or job.sweep_id is None:
            return
        sweeper(stores, settings, send).advance(job.sweep_id)
    except Exception:  # the recovery pass advances the sweep again
        log.exception("job %s: could not advance its sweep", job_id)


def recover_sweeps(stores: "Stores", settings: Settings, send: Callable[[UUID], object]) -> None:
    """Advance every unsettled sweep: outcomes not yet recorded, trials not yet queued
    (a worker died between a trial's end and the next one's start), numbers left
    pending, promotions not run."""
    sweeps = sweeper(stores, settings, send)
    for sweep_id in sweeps.store.active_ids():
        try:
            sweeps.advance(sweep_id)
        except Exception as exc:
            log.warning("sweep %s: recovery pass failed: %s", sweep_id, exc)
