"""Shapes of hyper-parameter sweeps (``POST /sweeps``): the request, the record kept
in Redis, and what the API answers. Kept apart from shared/schemas.py, which they
build on, so that sweeps stay one concern in a few modules (see shared/sweeps.py)."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from shared.schemas.common import utcnow
from shared.schemas.jobs import JobStatus
from shared.schemas.models import PromoteOption, Promotion
from shared.schemas.params import MAX_EPOCHS, EarlyStopping, Seed, TrainParams

MAX_TRIALS = 200
MAX_PARALLEL = 32
DEFAULT_VALIDATION_FRACTION = 0.1
"""A sweep chooses by validation accuracy: its base holds out this share unless told."""

Choice = StrictBool | StrictInt | StrictFloat | StrictStr
"""A value Optuna can put in a categorical distribution (and JSON can carry)."""


class Sampler(StrEnum):
    """How Optuna picks the next trial's values: ``tpe`` (Bayesian, after ten random
    trials), ``random``, or ``grid`` (every combination of ``choices``, shuffled)."""

    tpe = "tpe"
    random = "random"
    grid = "grid"


class PrunerKind(StrEnum):
    median = "median"
    none = "none"


SweepStatus = JobStatus
"""A sweep moves through the states of a job: queued, running, then one of succeeded,
failed (every trial failed) or cancelled."""


class TrialState(StrEnum):
    queued = "queued"
    running = "running"
    complete = "complete"
    pruned = "pruned"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (TrialState.queued, TrialState.running)


class RangeSpace(BaseModel):
    """A numeric field searched between ``low`` and ``high`` (both included); integer
    fields take integers only. ``log`` samples uniformly in the logarithm."""

    model_config = ConfigDict(extra="forbid")

    low: StrictInt | StrictFloat
    high: StrictInt | StrictFloat
    log: StrictBool = False


class ChoiceSpace(BaseModel):
    """A field searched among listed values."""

    model_config = ConfigDict(extra="forbid")

    choices: Annotated[list[Choice], Field(min_length=1, max_length=100)]


SpaceParam = RangeSpace | ChoiceSpace


class SweepBase(TrainParams):
    """``base`` of ``POST /sweeps``: the hyper-parameters every trial shares, as
    ``POST /jobs`` takes them (``validation_fraction`` defaults to 0.1 here)."""

    model_config = ConfigDict(extra="forbid")

    # TrainParams' field (bounds, description) with the default a sweep gives it, so that
    # the schema says what shared/sweeps/request.resolve does when base leaves it out
    validation_fraction: Annotated[float, TrainParams.model_fields["validation_fraction"]] = (
        DEFAULT_VALIDATION_FRACTION
    )
    early_stopping: EarlyStopping | None = Field(
        None, description="Early stopping for every trial (as in POST /jobs)."
    )


class SweepRequest(BaseModel):
    """The body of ``POST /sweeps``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "base": {"epochs": 10, "train_size": 10000, "input_scaling": "unit"},
                    "space": {
                        "eta": {"low": 0.001, "high": 0.1, "log": True},
                        "n_hidden": {"choices": [50, 100]},
                    },
                    "trials": 8,
                    "parallel": 2,
                }
            ]
        },
    )

    base: SweepBase | None = Field(None, description="Values every trial shares.")
    space: dict[str, SpaceParam] = Field(
        min_length=1,
        max_length=20,
        description="TrainParams fields to search: {low, high, log} or {choices}.",
    )
    # strict: what JSON Schema says ("integer" is no string or boolean)
    trials: StrictInt = Field(20, ge=1, le=MAX_TRIALS, description="Trials to run in all.")
    parallel: StrictInt = Field(
        2, ge=1, le=MAX_PARALLEL, description="At most this many trials queued or running."
    )
    sampler: Sampler = Sampler.tpe
    pruner: PrunerKind = Field(
        PrunerKind.median,
        description="`median`: stop a trial whose validation accuracy is below the median "
        "of completed trials at the same epoch; `none`.",
    )
    pruner_startup_trials: StrictInt = Field(
        2, ge=0, le=MAX_TRIALS, description="Completed trials before any trial is pruned."
    )
    pruner_warmup_epochs: StrictInt = Field(
        1, ge=0, le=MAX_EPOCHS, description="Epochs every trial runs before it may be pruned."
    )
    seed: Seed | None = Field(
        None, strict=True, description="Seed of the sampler (default: a random one)."
    )
    promote: PromoteOption | None = Field(
        None, description="When the sweep ends, put its best model through the promotion gate."
    )


class TrialRecord(BaseModel):
    """One trial of a sweep, as the sweep record keeps it."""

    number: int = Field(description="0-based; every number below `trials` appears once.")
    params: dict[str, Any] = Field(description="The values the sampler chose for the space.")
    state: TrialState
    value: float | None = Field(None, description="Validation accuracy of its model (kept epoch).")
    job_id: UUID | None = Field(None, description="Its training job (none if it never got one).")
    model_id: UUID | None = None
    epochs_run: int = 0
    error: str | None = None
    optuna_trial_id: int | None = Field(None, description="Optuna's id of the trial.")
    sent: bool = Field(False, description="Its job's message is on the queue.")
    created_at: datetime = Field(default_factory=utcnow)


class BestTrial(BaseModel):
    number: int
    value: float
    params: dict[str, Any]
    model_id: UUID | None


class Sweep(BaseModel):
    """The sweep record: written by the API at submission, moved on by whoever finishes
    a trial (a worker), tops the sweep up (any worker's recovery pass) or cancels it."""

    id: UUID
    status: SweepStatus = SweepStatus.queued
    request: SweepRequest
    base: TrainParams = Field(description="The resolved hyper-parameters every trial starts from.")
    seed: int = Field(description="The sampler's seed (the request's, or the one drawn).")
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    asked: int = Field(0, description="Trial numbers handed out so far.")
    pending: dict[int, datetime] = Field(
        default_factory=dict, description="Numbers handed out whose job is being created."
    )
    waiting: list[int] = Field(
        default_factory=list,
        description="Numbers asked for whose job waits for room in the queue (MAX_QUEUED_JOBS).",
    )
    trials: list[TrialRecord] = Field(default_factory=list)
    cancel_requested: bool = False
    best: BestTrial | None = None
    error: str | None = None
    promotion: Promotion | None = None
    settled: bool = Field(False, description="Finished, and the promotion gate (if any) ran.")

    def active(self) -> int:
        """Trials that count against ``parallel``: handed out and not finished."""
        return (
            len(self.pending) + len(self.waiting) + sum(not t.state.finished for t in self.trials)
        )

    def trial(self, number: int) -> TrialRecord | None:
        return next((t for t in self.trials if t.number == number), None)


class SweepPublic(Sweep):
    """``GET /sweeps/{id}``: the record, with live trial states and derived numbers."""

    counts: dict[str, int] = Field(default_factory=dict, description="Trials by state.")
    wall_seconds: float | None = Field(None, description="From the first trial's start.")


class SweepAccepted(BaseModel):
    id: UUID
    status: SweepStatus


class SweepList(BaseModel):
    items: list[SweepPublic]
    total: int
    offset: int
    limit: int
