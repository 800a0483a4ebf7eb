"""Hyper-parameter sweeps: creating, advancing, cancelling.

A sweep is a record (``sweep:<id>``, shared/sweeps/store.py) plus an Optuna study
whose journal lives in Redis (shared/sweeps/study.py), so no process holds the sweep.
Each trial is an ordinary training job (``Job.sweep_id``, ``Job.trial``) with a
deterministic id, ``uuid5(sweep id, number)``, created through the job store's one
creation script and the submission's checks like every job (the memory limit, and
``MAX_QUEUED_JOBS``: a trial that finds the queue full waits in the record and is
tried again at every later step).

Everything that moves a sweep on is :meth:`Sweeper.advance`, idempotent and safe to
run from several processes at once: the worker that finished a trial runs it, so does
the API after creating or cancelling a sweep, and every worker's recovery pass runs it
for every unsettled sweep (which covers a process that died anywhere in between). It

1. *reconciles*: each trial whose job has ended is told to Optuna
   (``skip_if_finished``) and then marked in the record (complete, pruned, failed,
   cancelled);
2. *tops up*: waiting trials first; then "may I start another trial, and which number"
   is one ``WATCH`` transaction on the record (:meth:`SweepStore.reserve`: fewer than
   ``parallel`` active, fewer than ``trials`` handed out, not cancelled), which hands
   out the next number and notes it as pending; Optuna is asked for that number's
   values (a number asked before is answered the same, so a retry never asks twice);
   the job is created (an existing job of that id is found instead), then recorded in
   the sweep, and only then is its message sent. A number left pending by a process
   that died is finished by a later advance; a job whose message may not have been
   sent is sent again (a duplicate message is harmless: the job lease lets one
   process train it);
3. *finishes* the sweep when every number was handed out and every trial ended (or it
   was cancelled and nothing is active), then runs the promotion gate for the best
   trial's model.

Trials are pruned by the worker (:class:`~shared.sweeps.study.TrialMonitor`): after
every epoch it reports validation accuracy to the trial and stops at that epoch
boundary when the pruner says so. A pruned trial's job ends ``cancelled`` with
``pruned_at_epoch`` set and no model.
"""

import logging
import math
import random
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast
from uuid import UUID, uuid4, uuid5

from pydantic import ValidationError

from shared.jobs.queue import QueueUnavailable
from shared.jobs.records import IdClaimed, JobEnded, JobNotFound, QueueFull, TooLateToCancel
from shared.schemas.common import utcnow
from shared.schemas.jobs import EpochRecord, Job, JobStatus
from shared.schemas.params import Preset, TrainParams
from shared.schemas.sweeps import (
    BestTrial,
    Sweep,
    SweepPublic,
    SweepRequest,
    SweepStatus,
    TrialRecord,
    TrialState,
)
from shared.submission import Submitter, TooBig
from shared.sweeps.request import check_memory, resolve
from shared.sweeps.store import SweepEnded, SweepNotFound, SweepStore
from shared.sweeps.study import Studies, TrialMonitor
from shared.sweeps.view import live_view

log = logging.getLogger(__name__)

PENDING_GRACE = timedelta(seconds=30)
"""A number pending this long was handed to a process that died: finish its trial."""
SEND_GRACE = timedelta(seconds=10)
"""A queued trial whose message is not marked sent this long after its creation
gets it sent again."""


def trial_job_id(sweep_id: UUID, number: int) -> UUID:
    """The job of trial ``number``: derived, so that a retried step finds the same job."""
    return uuid5(sweep_id, f"trial-{number}")


def trial_outcome(
    trial: TrialRecord, job: Job | None, val_accuracy: Callable[[int], float | None]
) -> TrialRecord:
    """The trial's final record from its ended job; ``val_accuracy(epoch)`` reads the
    job's history. The value is the validation accuracy of the epoch whose weights
    the model kept (the best epoch under early stopping, else the last)."""
    if job is None:
        return trial.model_copy(update={"state": TrialState.failed, "error": "job record lost"})
    update: dict[str, Any] = {"epochs_run": job.epoch}
    if job.status is JobStatus.succeeded:
        value = val_accuracy(job.best_epoch or job.epoch)
        if value is None or math.isnan(value):
            update |= {"state": TrialState.failed, "error": "no validation accuracy"}
        else:
            update |= {"state": TrialState.complete, "value": value, "model_id": job.model_id}
    elif job.status is JobStatus.cancelled and job.pruned_at_epoch is not None:
        update |= {
            "state": TrialState.pruned,
            "value": val_accuracy(job.pruned_at_epoch),
            "epochs_run": job.pruned_at_epoch,
        }
    elif job.status is JobStatus.cancelled:
        update |= {"state": TrialState.cancelled}
    else:
        update |= {"state": TrialState.failed, "error": job.error}
    return trial.model_copy(update=update)


class Sweeper:
    """Creates, advances, cancels and shows sweeps; one per process (its studies keep
    each sweep's journal, read once, then followed)."""

    def __init__(self, store: SweepStore, studies: Studies, submit: Submitter) -> None:
        self.store, self.studies, self.submit = store, studies, submit
        self.jobs, self.models = submit.jobs, submit.models

    # the life of a sweep

    def create(self, request: SweepRequest, preset: Preset | None = None) -> Sweep:
        """Check, record and start a sweep (its first ``parallel`` trials are queued).

        Raises ``SweepInvalid`` for a request that cannot run, including a space one of
        whose trials could need more memory than ``JOB_MEMORY_LIMIT_MB`` allows, and
        ``QueueFull`` when ``MAX_QUEUED_JOBS`` jobs are queued already."""
        base = resolve(request, preset)
        check_memory(request, base, self.submit.settings.job_memory_limit_mb)
        queued = self.jobs.queued_count()
        if queued >= self.submit.settings.max_queued_jobs:
            raise QueueFull(queued)
        seed = request.seed if request.seed is not None else random.randrange(2**32)
        sweep = Sweep(id=uuid4(), request=request, base=base, seed=seed)
        self.studies.create(sweep)
        self.store.create(sweep)
        try:
            return self.advance(sweep.id) or sweep
        except Exception:  # recorded: the workers' recovery passes start its trials
            log.exception("sweep %s: could not start its first trials", sweep.id)
            return sweep

    def advance(self, sweep_id: UUID) -> Sweep | None:
        """Reconcile ended trials, start trials while there is room, finish the sweep."""
        sweep = self.store.get(sweep_id)
        if sweep is None or sweep.settled:
            return sweep
        self._reconcile(sweep)
        if self._resume_unfinished_steps(sweep_id):
            while (number := self.store.reserve(sweep_id)) is not None:
                if not self._start_trial(self._get(sweep_id), number):
                    break
        return self._finish(sweep_id)

    def _get(self, sweep_id: UUID) -> Sweep:
        sweep = self.store.get(sweep_id)
        if sweep is None:
            raise SweepNotFound(str(sweep_id))
        return sweep

    def _reconcile(self, sweep: Sweep) -> None:
        """Tell Optuna about trials whose job ended, then record how they ended."""
        open_trials = [t for t in sweep.trials if not t.state.finished and t.job_id]
        jobs = self.jobs.get_many(cast(UUID, t.job_id) for t in open_trials)
        for trial in open_trials:
            job = jobs.get(cast(UUID, trial.job_id))
            if job is not None and not job.status.finished:
                continue
            history = self.jobs.progress(job.id, 0)[1] if job is not None else []

            def val_accuracy(epoch: int, rows: list[EpochRecord] = history) -> float | None:
                return rows[epoch - 1].val_accuracy if 0 < epoch <= len(rows) else None

            outcome = trial_outcome(trial, job, val_accuracy)
            self.studies.tell(sweep, outcome)  # before the record: a retry tells again
            self.store.end_trial(sweep.id, trial.number, outcome)
            log.info(
                "sweep %s: trial %d %s (value %s)",
                sweep.id,
                trial.number,
                outcome.state.value,
                outcome.value,
            )

    def _resume_unfinished_steps(self, sweep_id: UUID) -> bool:
        """Finish what was left half done: trials waiting for room in the queue, numbers
        handed out without a trial (their process died), trials whose message may never
        have been sent. False when the queue is still full (no new trial may start)."""
        sweep = self._get(sweep_id)
        for number in list(sweep.waiting):
            if not self._start_trial(sweep, number):
                return False
        now = utcnow()
        for number, since in sorted(sweep.pending.items()):
            if now - since > PENDING_GRACE:
                log.warning("sweep %s: finishing trial %d left pending", sweep_id, number)
                if not self._start_trial(sweep, number):
                    return False
        for trial in sweep.trials:
            if trial.sent or trial.job_id is None or now - trial.created_at < SEND_GRACE:
                continue
            job = self.jobs.get(trial.job_id)
            if job is not None and job.status is JobStatus.queued:
                log.warning("sweep %s: sending trial %d's job again", sweep_id, trial.number)
                self.submit.queue.send(trial.job_id)
            self.store.mark_sent(sweep_id, trial.number)
        return True

    def _start_trial(self, sweep: Sweep, number: int) -> bool:
        """Ask Optuna for trial ``number``'s values, create its job, record it, queue it.
        False when the queue is full: the trial waits for room."""
        if sweep.cancel_requested:
            record = TrialRecord(number=number, params={}, state=TrialState.cancelled)
            self.store.record_trial(sweep.id, record)
            return True
        optuna_id, values = self.studies.ask(sweep, number)
        record = TrialRecord(
            number=number, params=values, state=TrialState.queued, optuna_trial_id=optuna_id
        )
        try:
            params = TrainParams.model_validate({**sweep.base.model_dump(), **values})
            self.submit.check_memory(params)
        except (ValidationError, TooBig) as exc:  # what the bounds of one field cannot see
            error = f"invalid combination: {_first_error(exc)}"
            failed = record.model_copy(update={"state": TrialState.failed, "error": error})
            self.studies.tell(sweep, failed)
            self.store.record_trial(sweep.id, failed)
            return True
        job = Job(
            id=trial_job_id(sweep.id, number),
            params=params,
            epochs=params.epochs,
            early_stopping=sweep.request.base.early_stopping if sweep.request.base else None,
            sweep_id=sweep.id,
            trial=number,
        )
        try:
            self.jobs.create(job, self.submit.settings.max_queued_jobs)
        except QueueFull:
            log.info("sweep %s: trial %d waits: the queue is full", sweep.id, number)
            self.store.park(sweep.id, number)
            return False
        except IdClaimed:  # an import took the id: the trial cannot have its job
            failed = record.model_copy(
                update={"state": TrialState.failed, "error": "its job id is taken by a model"}
            )
            self.studies.tell(sweep, failed)
            self.store.record_trial(sweep.id, failed)
            return True
        recorded, created = self.store.record_trial(
            sweep.id, record.model_copy(update={"job_id": job.id})
        )
        if recorded.state is TrialState.cancelled:
            self.studies.tell(sweep, recorded)
            _cancel(self.jobs.request_cancel, job.id)
        elif created:
            try:
                self.submit.queue.send(job.id)
            except QueueUnavailable:  # recorded unsent: a later step sends it again
                log.warning(
                    "sweep %s: trial %d not queued yet: broker unreachable", sweep.id, number
                )
                return True
            self.store.mark_sent(sweep.id, number)
            log.info("sweep %s: trial %d queued as job %s: %s", sweep.id, number, job.id, values)
        return True

    def _finish(self, sweep_id: UUID) -> Sweep:
        """The final status once nothing is active and nothing more will start; then
        the promotion gate for the best model (once: ``settled`` records it ran)."""

        def change(sweep: Sweep) -> Sweep | None:
            if sweep.status.finished or sweep.active():
                return None
            if not sweep.cancel_requested and sweep.asked < sweep.request.trials:
                return None
            complete = [t for t in sweep.trials if t.state is TrialState.complete]
            if complete:
                top = max(complete, key=lambda t: (cast(float, t.value), -t.number))
                sweep.best = BestTrial(
                    number=top.number,
                    value=cast(float, top.value),
                    params=top.params,
                    model_id=top.model_id,
                )
            if sweep.cancel_requested:
                sweep.status = SweepStatus.cancelled
            elif complete:
                sweep.status = SweepStatus.succeeded
            else:
                sweep.status = SweepStatus.failed
                counts = Counter(t.state.value for t in sweep.trials)
                sweep.error = "no trial completed: " + ", ".join(
                    f"{n} {state}" for state, n in sorted(counts.items())
                )
            sweep.finished_at = utcnow()
            sweep.started_at = sweep.started_at or sweep.finished_at
            sweep.settled = sweep.status is not SweepStatus.succeeded or not sweep.request.promote
            return sweep

        sweep = self.store.update(sweep_id, change)
        if sweep.status.finished and not sweep.settled:
            sweep = self._promote(sweep)
        return sweep

    def _promote(self, sweep: Sweep) -> Sweep:
        option = sweep.request.promote
        model_id = sweep.best.model_id if sweep.best else None
        info = self.models.registry.get_model(model_id) if model_id else None
        promotion = None
        if option is not None and info is not None:
            promotion = self.models.aliases.promote_if_better(info, option, info.test_accuracy)
            log.info(
                "sweep %s: promotion gate for %s: %s", sweep.id, option.alias, promotion.reason
            )

        def change(record: Sweep) -> Sweep | None:
            if record.settled:
                return None
            record.promotion, record.settled = promotion, True
            return record

        return self.store.update(sweep.id, change)

    def cancel(self, sweep_id: UUID) -> Sweep:
        """No new trial starts; queued and running trials end ``cancelled`` at their
        next epoch boundary (through their jobs' cancel). Raises :class:`SweepEnded`."""

        def change(sweep: Sweep) -> Sweep:
            if sweep.status.finished:
                raise SweepEnded("sweep", sweep)
            sweep.cancel_requested = True
            return sweep

        sweep = self.store.update(sweep_id, change)
        for trial in sweep.trials:
            if trial.job_id is not None and not trial.state.finished:
                _cancel(self.jobs.request_cancel, trial.job_id)
        return self.advance(sweep_id) or sweep

    def mark_started(self, sweep_id: UUID) -> None:
        self.store.mark_started(sweep_id)

    def monitor(self, job: Job) -> TrialMonitor | None:
        """For a sweep's trial (else ``None``): marks the sweep running and follows the
        trial's pruner. A sweep that cannot be read leaves the trial to train unpruned."""
        if job.sweep_id is None or job.trial is None:
            return None
        try:
            self.store.mark_started(job.sweep_id)
            sweep = self.store.get(job.sweep_id)
            trial = sweep.trial(job.trial) if sweep else None
            if sweep is None or trial is None:
                log.warning("job %s: its sweep or trial record is missing", job.id)
                return None
            return self.studies.monitor(sweep, trial)
        except Exception:
            log.exception("job %s: could not follow its sweep's pruner", job.id)
            return None

    # what clients see

    def view(self, sweep: Sweep) -> SweepPublic:
        return live_view(self.jobs, sweep)


def _cancel(request_cancel: Callable[[UUID], object], job_id: UUID) -> None:
    try:
        request_cancel(job_id)
    except (JobEnded, JobNotFound, TooLateToCancel) as exc:  # it ends by itself
        log.info("job %s not cancelled: %s", job_id, exc)


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return str(exc.errors()[0]["msg"])
    if isinstance(exc, TooBig):
        return str(exc.errors[0]["msg"])
    return str(exc)
