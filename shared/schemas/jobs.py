"""Training jobs: the request of ``POST /jobs``, the record in Redis, what the API answers."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.schemas.common import utcnow
from shared.schemas.models import PromoteOption, Promotion
from shared.schemas.params import EarlyStopping, TrainParams, needs_validation


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


Finite = Annotated[float, Field(allow_inf_nan=False)]
"""A number a record may hold: JSON has no NaN or infinity, and a record that cannot be
read back would take down every reader of it (the trainer stops a diverging run first)."""


class EpochRecord(BaseModel):
    epoch: int = Field(description="1-based epoch number.")
    cost: Finite = Field(description="Mean mini-batch cost (logistic + penalties).")
    seconds: Finite = Field(description="Wall time of the epoch.")
    eta: Finite = Field(description="Learning rate used in the epoch.")
    val_accuracy: Finite | None = Field(None, description="Only with a validation split.")


class JobOptions(BaseModel):
    """What a job does besides training: not hyper-parameters of the model."""

    model_config = ConfigDict(extra="forbid")

    promote: PromoteOption | None = Field(
        None, description="Run the promotion gate for this alias when the job succeeds."
    )
    init_model: str | None = Field(
        None,
        max_length=64,
        description="Fine-tune: start from this model's weights (a model id or an alias, "
        "resolved to an id at submission). n_hidden, input_scaling and dtype default to its.",
    )
    feedback_weight: int = Field(
        0,
        ge=0,
        le=100,
        description="Add the users' corrections to the training set, each "
        "repeated this many times (0: none).",
    )
    feedback_holdout: float = Field(
        0.2,
        ge=0,
        le=0.5,
        allow_inf_nan=False,
        description="Share of the corrections kept out of training to measure on (seeded).",
    )
    early_stopping: EarlyStopping | None = Field(
        None,
        description="Stop when validation accuracy has not improved by min_delta for patience "
        "epochs, keeping the best epoch's weights (needs validation_fraction > 0).",
    )


class JobRequest(TrainParams, JobOptions):
    """The body of ``POST /jobs``: hyper-parameters and job options side by side."""

    model_config = ConfigDict(extra="forbid")

    def split(self) -> tuple[dict[str, object], JobOptions]:
        """The hyper-parameters the client set, and the job options."""
        given = self.model_dump(exclude_unset=True)
        options = {name: given.pop(name) for name in JobOptions.model_fields if name in given}
        return given, JobOptions.model_validate(options)

    @model_validator(mode="after")
    def _early_stopping_needs_validation(self) -> Self:
        needs_validation(self.early_stopping, self.validation_fraction)
        return self


class FrozenFeedback(BaseModel):
    """The corrections a job uses, frozen at its first start, so that a resumed job trains
    on the same data (the ids themselves: ``GET /jobs/{id}/feedback``)."""

    count: int = Field(description="Correction ids frozen.")
    sha256: str = Field(description="sha256 of the sorted ids, one per line.")
    frozen_at: datetime


class Job(BaseModel):
    """A job record: written by the API at submission, moved on by the worker."""

    id: UUID
    status: JobStatus = JobStatus.queued
    params: TrainParams
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    epoch: int = Field(0, description="Epochs finished so far.")
    epochs: int = Field(description="Epochs asked for.")
    model_id: UUID | None = None
    train_accuracy: Finite | None = None
    test_accuracy: Finite | None = None
    error: str | None = None
    attempts: int = Field(0, description="Times a worker has started this job.")
    promote: PromoteOption | None = Field(None, description="The promotion gate asked for.")
    promotion: Promotion | None = Field(None, description="What the promotion gate decided.")
    cancel_requested: bool = Field(False, description="A cancel was asked for.")
    committed: bool = Field(
        False,
        description="Training is over and the model is being saved: too late to cancel.",
    )
    early_stopping: EarlyStopping | None = Field(None, description="The early stopping asked for.")
    stopped_at_epoch: int | None = Field(
        None, description="Early stopping ended training after this epoch (before `epochs`)."
    )
    best_epoch: int | None = Field(
        None, description="With early stopping: the epoch whose weights the model kept."
    )
    sweep_id: UUID | None = Field(None, description="The sweep this job is a trial of.")
    trial: int | None = Field(None, description="Its trial number in that sweep (from 0).")
    pruned_at_epoch: int | None = Field(
        None,
        description="The sweep's pruner stopped this trial after this epoch: the job ends "
        "`cancelled`, with no model.",
    )
    init_model: str | None = Field(None, description="The init_model asked for.")
    init_model_id: UUID | None = Field(None, description="The model it starts from.")
    feedback_weight: int = 0
    feedback_holdout: float = 0.2
    feedback: FrozenFeedback | None = Field(None, description="The corrections it froze.")


class JobEnd(BaseModel):
    """What a job's end adds to its record besides its status."""

    error: str | None = None
    model_id: UUID | None = None
    train_accuracy: Finite | None = None
    test_accuracy: Finite | None = None
    promotion: Promotion | None = None
    best_epoch: int | None = None
    stopped_at_epoch: int | None = None
    pruned_at_epoch: int | None = None


class JobPublic(Job):
    history: list[EpochRecord] = Field(default_factory=list)


class JobAccepted(BaseModel):
    id: UUID
    status: JobStatus


class JobList(BaseModel):
    items: list[Job]
    total: int
    offset: int
    limit: int
