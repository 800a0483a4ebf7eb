"""Request, response and record shapes: the single source of truth for the API,
the Redis records and therefore the OpenAPI document."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

N_PIXELS = 784
IMAGE_SIDE = 28
PREDICT_BATCH_MAX = 1000
"""Most images one ``POST /predict`` may carry (about 3 MB of JSON)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class LrSchedule(StrEnum):
    """How the learning rate decays at the start of every epoch ``i``.

    ``compound`` is what the book's code does (``eta /= 1 + d*i``, every epoch, so
    the decay compounds); ``inverse`` is the formula of its docstring
    (``eta = eta0 / (1 + d*i)``).
    """

    compound = "compound"
    inverse = "inverse"


class InputScaling(StrEnum):
    """What the network sees of a 0..255 pixel. Stored with every model, so clients
    always send raw pixels. ``none`` is the book's choice."""

    none = "none"
    unit = "unit"

    @property
    def factor(self) -> float:
        return 1.0 if self is InputScaling.none else 1.0 / 255.0


class TrainParams(BaseModel):
    """Hyper-parameters of one training job. Defaults reproduce the book's published
    run; the bounds keep a single request from occupying a worker for days."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"epochs": 20},
                {"n_hidden": 100, "epochs": 30, "eta": 0.1, "input_scaling": "unit"},
            ]
        },
    )

    n_hidden: int = Field(
        50, ge=1, le=1024, description="Hidden units: neurons in the one hidden layer."
    )
    l1: float = Field(
        0.0,
        ge=0,
        le=10,
        description="L1 penalty l1·Σ|w|: pushes weights toward 0, sparser (not biases).",
    )
    l2: float = Field(
        0.1, ge=0, le=10, description="L2 penalty l2/2·Σw²: keeps weights small (not biases)."
    )
    epochs: int = Field(
        1000, ge=1, le=5000, description="Passes over the training set; time grows with it."
    )
    eta: float = Field(
        0.001, gt=0, le=10, description="Learning rate η: the size of each gradient step at first."
    )
    alpha: float = Field(
        0.001, ge=0, lt=1, description="Momentum: share of the previous step added to each step."
    )
    decrease_const: float = Field(
        0.00001, ge=0, le=1, description="Learning-rate decay d: how fast η shrinks per epoch."
    )
    lr_schedule: LrSchedule = Field(
        LrSchedule.compound,
        description="How η decays in epoch i: compound η /= 1+d·i each epoch (the book's code); "
        "inverse η = η0/(1+d·i).",
    )
    minibatches: int = Field(
        50, ge=1, le=10_000, description="Mini-batches per epoch: weight updates per pass."
    )
    shuffle: bool = Field(True, description="Reshuffle the training set every epoch.")
    seed: int = Field(
        1,
        ge=0,
        le=2**32 - 1,
        description="Seed of the job's random generator: same seed, same run.",
    )
    input_scaling: InputScaling = Field(
        InputScaling.none,
        description="What the network sees of a pixel: none 0..255 (the book), unit 0..1.",
    )
    validation_fraction: float = Field(
        0.0, ge=0, le=0.5, description="Share of the training set held out to report accuracy."
    )
    train_size: int | None = Field(
        None, ge=100, le=60_000, description="Train on the first N images only (quick runs)."
    )
    dtype: Literal["float32", "float64"] = Field(
        "float32", description="Arithmetic precision: float32 is faster, float64 the book's."
    )

    @model_validator(mode="after")
    def _enough_samples(self) -> Self:
        samples = self.train_size or 60_000
        fit = samples - int(samples * self.validation_fraction)
        if self.minibatches > fit:
            raise ValueError(f"minibatches ({self.minibatches}) exceeds training samples ({fit})")
        return self


def needs_validation(early_stopping: "EarlyStopping | None", validation_fraction: float) -> None:
    """Early stopping watches validation accuracy: without a split it has nothing to watch."""
    if early_stopping is not None and validation_fraction <= 0:
        raise ValueError("early_stopping needs a validation split: set validation_fraction > 0")


class Preset(StrEnum):
    """Named starting points for ``POST /jobs?preset=``; body fields override them."""

    book = "book"
    fast = "fast"


PRESETS: dict[Preset, dict[str, object]] = {
    Preset.book: {},
    # >= 97.5% test accuracy in well under a minute on 2 cores (BENCHMARKS.md).
    Preset.fast: {
        "n_hidden": 100,
        "input_scaling": "unit",
        "epochs": 30,
        "minibatches": 600,
        "eta": 0.02,
        "l2": 0.005,
        "alpha": 0.0,
        "lr_schedule": "inverse",
        "decrease_const": 0.05,
    },
}


def with_preset(preset: Preset | None, params: TrainParams | None) -> TrainParams:
    """The preset's values, then whatever the request set explicitly."""
    given = params.model_dump(exclude_unset=True) if params is not None else {}
    return TrainParams.model_validate({**PRESETS[preset or Preset.book], **given})


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class EpochRecord(BaseModel):
    epoch: int = Field(description="1-based epoch number.")
    cost: float = Field(description="Mean mini-batch cost (logistic + penalties).")
    seconds: float = Field(description="Wall time of the epoch.")
    eta: float = Field(description="Learning rate used in the epoch.")
    val_accuracy: float | None = Field(None, description="Only with a validation split.")


ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
AliasName = Annotated[
    str, Field(pattern=ALIAS_PATTERN, description="An alias name: `^[a-z][a-z0-9_-]{0,31}$`.")
]


class PromoteOption(BaseModel):
    """``promote`` of ``POST /jobs``: put the model behind ``alias`` if it is good enough."""

    model_config = ConfigDict(extra="forbid")

    alias: AliasName = "production"
    min_gain: float = Field(
        0.0,
        ge=-1,
        le=1,
        strict=True,  # JSON Schema's number: no booleans or strings
        allow_inf_nan=False,
        description="Promote when the candidate's accuracy >= the incumbent's + min_gain.",
    )
    metric: Literal["test_accuracy", "feedback_accuracy"] = Field(
        "test_accuracy",
        description="What is compared: MNIST test accuracy, or accuracy on the job's held-out "
        "corrections (the incumbent measured on the same ones). Either way a model whose "
        "test accuracy fell by more than PROMOTION_MAX_TEST_DROP is never promoted.",
    )


class Promotion(BaseModel):
    """What the promotion gate decided for one job (written before it reads succeeded)."""

    alias: str
    promoted: bool
    candidate_accuracy: float | None
    incumbent_accuracy: float | None
    incumbent_model_id: UUID | None = None
    reason: str
    metric: str = Field("test_accuracy", description="What the accuracies are.")


class EarlyStopping(BaseModel):
    """``early_stopping`` of ``POST /jobs``: stop when validation accuracy stalls."""

    model_config = ConfigDict(extra="forbid")

    patience: int = Field(
        ge=1,
        le=5000,
        strict=True,
        description="Epochs in a row without improvement before training stops.",
    )
    min_delta: float = Field(
        0.0,
        ge=0,
        le=1,
        strict=True,
        allow_inf_nan=False,
        description="Least gain in validation accuracy that counts as an improvement.",
    )


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
    train_accuracy: float | None = None
    test_accuracy: float | None = None
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


class Misclassified(BaseModel):
    index: int = Field(
        ge=0, description="Index into the MNIST test set (see GET /dataset/test/{index})."
    )
    label: int = Field(ge=0, le=9, description="True label.")
    predicted: int = Field(ge=0, le=9, description="The model's label.")


Accuracy = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class ModelMeta(BaseModel):
    """The metadata stored inside a model's ``.npz``: written by the worker, validated
    on every load (a file from outside is data, not code)."""

    model_config = ConfigDict(extra="ignore")

    created_at: datetime
    job_id: UUID | None
    params: TrainParams
    train_accuracy: Accuracy | None
    test_accuracy: Accuracy | None
    input_scale: float = Field(
        gt=0, le=1, allow_inf_nan=False, description="Factor applied to 0..255 pixels first."
    )
    confusion: (
        Annotated[
            list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=10, max_length=10)]],
            Field(min_length=10, max_length=10),
        ]
        | None
    ) = Field(
        None,
        description="10x10 confusion matrix on the MNIST test set: rows are the true label, "
        "columns the predicted one (absent for older models).",
    )
    errors: list[Misclassified] = Field(
        default_factory=list,
        max_length=100,
        description="The first (up to 100) misclassified MNIST test images, in test-set order.",
    )
    parent_model_id: UUID | None = Field(None, description="The model it was fine-tuned from.")
    feedback_count: int | None = Field(None, ge=0, description="Corrections trained on.")
    feedback_accuracy: Accuracy | None = Field(
        None, description="Accuracy on the job's held-out corrections."
    )
    parent_feedback_accuracy: Accuracy | None = Field(
        None, description="The parent's accuracy on the same held-out corrections."
    )


class ModelFacts(BaseModel):
    """What the registry adds to a model's metadata."""

    id: UUID
    sha256: str
    size_bytes: int
    aliases: list[str] = Field(default_factory=list, description="Aliases pointing at it.")
    broken: str | None = Field(
        None, description="Why its file failed its check when last loaded (then not served)."
    )
    imported_at: datetime | None = Field(
        None, description="When it was imported from another instance (POST /models)."
    )
    imported_from: str | None = Field(None, description="Where an imported model came from.")
    deleting: bool = Field(False, description="Being deleted: no alias may take it.")


class ModelSummary(ModelFacts):
    """A row of ``GET /models``: no confusion matrix or misclassified images."""

    created_at: datetime
    job_id: UUID | None
    params: TrainParams
    train_accuracy: float | None
    test_accuracy: float | None
    input_scale: float
    parent_model_id: UUID | None = None
    feedback_accuracy: float | None = None


class ModelInfo(ModelMeta, ModelFacts):
    """The whole model card (``GET /models/{id}``), as the registry stores it."""

    def summary(self) -> ModelSummary:
        return ModelSummary.model_validate(self.model_dump(exclude={"confusion", "errors"}))


class DatasetImage(BaseModel):
    index: int = Field(description="Index into the MNIST test set.")
    label: int
    pixels: list[list[int]] = Field(description="28 rows of 28 values, 0..255, white on black.")


class DatasetSamples(BaseModel):
    per_class: int
    items: list[DatasetImage] = Field(description="The first per_class test images of 0..9.")


class ModelList(BaseModel):
    items: list[ModelSummary]
    total: int
    offset: int
    limit: int


Pixel = Annotated[float, Field(ge=0, le=255, allow_inf_nan=False, strict=True)]
Image = Annotated[list[Pixel], Field(min_length=N_PIXELS, max_length=N_PIXELS)]


def _flatten_image(value: object) -> object:
    """Accept a 28x28 nested list as well as 784 flat values."""
    if (
        isinstance(value, list)
        and len(value) == IMAGE_SIDE
        and all(isinstance(row, list) for row in value)
    ):
        if any(len(row) != IMAGE_SIDE for row in value):
            raise ValueError("a nested image must be 28 rows of 28 values")
        return [pixel for row in value for pixel in row]
    return value


class PredictRequest(BaseModel):
    """One image (``pixels``) or a batch (``images``): 0..255 values, row-major."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"pixels": [0] * N_PIXELS}]},
    )

    pixels: Image | None = Field(None, description="784 values, or a 28x28 nested list.")
    images: Annotated[list[Image], Field(min_length=1, max_length=PREDICT_BATCH_MAX)] | None = (
        Field(None, description=f"Up to {PREDICT_BATCH_MAX} images of 784 values.")
    )
    model_id: UUID | None = Field(
        None, description="A model by id. Default: the serving alias, else the newest model."
    )
    alias: AliasName | None = Field(None, description="A model by alias (not with model_id).")

    @field_validator("pixels", mode="before")
    @classmethod
    def _flat_pixels(cls, value: object) -> object:
        return _flatten_image(value)

    @field_validator("images", mode="before")
    @classmethod
    def _flat_images(cls, value: object) -> object:
        return [_flatten_image(image) for image in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.pixels is None) == (self.images is None):
            raise ValueError("send exactly one of 'pixels' (one image) or 'images' (a batch)")
        if self.model_id is not None and self.alias is not None:
            raise ValueError("send at most one of 'model_id' or 'alias'")
        return self


class Prediction(BaseModel):
    label: int
    probabilities: list[float] = Field(description="Ten output activations, normalised.")
    model_id: UUID
    alias: str | None = Field(description="The alias it was served through, or null.")


class BatchPrediction(BaseModel):
    labels: list[int]
    probabilities: list[list[float]]
    model_id: UUID
    alias: str | None


class AliasSource(StrEnum):
    api = "api"
    rollback = "rollback"
    gate = "gate"


class AliasChange(BaseModel):
    """One row of an alias's history."""

    model_id: UUID
    previous_model_id: UUID | None
    at: datetime
    reason: str | None = None
    source: AliasSource


class AliasSummary(BaseModel):
    name: str
    model_id: UUID
    updated_at: datetime


class Alias(AliasSummary):
    history: list[AliasChange] = Field(description="One row per change, newest first.")


class AliasList(BaseModel):
    items: list[AliasSummary]


class AliasUpdate(BaseModel):
    """The body of ``PUT /aliases/{name}``."""

    model_config = ConfigDict(extra="forbid")

    model_id: UUID
    reason: str | None = Field(None, max_length=500)


class NewsKind(StrEnum):
    model = "model"
    alias = "alias"
    deleted = "deleted"
    broken = "broken"


class ModelNews(BaseModel):
    """One announcement on the ``announcements`` channel: API processes re-read what
    serves when they hear one."""

    kind: NewsKind
    model_id: UUID | None = None
    alias: str | None = None


class ErrorBody(BaseModel):
    detail: str


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    detail: str | None = None
    serving: "Serving | None" = Field(None, description="What /predict serves by default.")
    refused_models: dict[str, str] = Field(
        default_factory=dict, description="Models that failed to load, with the reason."
    )


class Serving(BaseModel):
    """Which model a request without ``model_id`` or ``alias`` gets."""

    model_id: UUID | None
    alias: str | None = Field(description="The serving alias, when it exists and serves.")
    fallback: bool = Field(
        description="The default had to fall back (the alias's or the newest model is broken)."
    )


Health.model_rebuild()
