"""What clients see of a sweep: the record with each open trial read live from its job."""

from collections import Counter
from typing import cast
from uuid import UUID

from shared.jobs.store import JobStore
from shared.schemas.common import utcnow
from shared.schemas.jobs import JobStatus
from shared.schemas.sweeps import Sweep, SweepPublic, SweepStatus, TrialState


def live_view(jobs: JobStore, sweep: Sweep) -> SweepPublic:
    """The record with each open trial's state and epochs read from its job (the record
    itself is written only when a trial is created and when it ends)."""
    open_trials = [t for t in sweep.trials if not t.state.finished and t.job_id]
    records = jobs.get_many(cast(UUID, t.job_id) for t in open_trials)
    live = {}
    for trial in open_trials:
        job = records.get(cast(UUID, trial.job_id))
        if job is None:
            continue
        state = TrialState.queued if job.status is JobStatus.queued else TrialState.running
        live[trial.number] = trial.model_copy(update={"state": state, "epochs_run": job.epoch})
    trials = [live.get(t.number, t) for t in sweep.trials]
    status = sweep.status
    if status is SweepStatus.queued and any(t.state is not TrialState.queued for t in trials):
        status = SweepStatus.running
    counts = Counter(t.state.value for t in trials)
    wall = None
    if sweep.started_at is not None:
        wall = ((sweep.finished_at or utcnow()) - sweep.started_at).total_seconds()
    return SweepPublic(
        **sweep.model_dump(exclude={"trials", "status"}),
        status=status,
        trials=trials,
        counts={state.value: counts.get(state.value, 0) for state in TrialState},
        wall_seconds=wall,
    )
