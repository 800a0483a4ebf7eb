"""Models and what serves them: the metadata inside a model file, the registry's card,
aliases and their history, the promotion gate's options and outcome, announcements."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.schemas.params import TrainParams

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


class Misclassified(BaseModel):
    index: int = Field(
        ge=0, description="Index into the MNIST test set (see GET /dataset/test/{index})."
    )
    label: int = Field(ge=0, le=9, description="True label.")
    predicted: int = Field(ge=0, le=9, description="The model's label.")


Accuracy = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]

INPUT_SUMMARIES = ("ink_mass", "bbox_height", "bbox_width", "centroid_offset", "stroke_intensity")
"""What drift watches of each input image (shared/ml/drift.py computes them)."""
OUTPUT_SUMMARIES = ("predicted_class", "top_probability")
"""What drift watches of each answer."""
SUMMARIES = INPUT_SUMMARIES + OUTPUT_SUMMARIES


class Histogram(BaseModel):
    """Counts over fixed bins: bin ``i`` holds the values in ``[edges[i], edges[i+1])``;
    values below the first edge count in the first bin, values at or above the last
    edge in the last one."""

    edges: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(min_length=2, max_length=65)
    counts: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _bins(self) -> Self:
        if len(self.counts) != len(self.edges) - 1:
            raise ValueError("a histogram has one count fewer than it has edges")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("a histogram's edges must increase")
        return self


class ReferenceProfile(BaseModel):
    """What a model's inputs and answers looked like when it was made: the inputs of
    its training data summarised per image, and its answers on its test data, as
    fixed-bin histograms (docs/lifecycle.md "Input drift"). Served inputs are compared
    with it by the population stability index."""

    model_config = ConfigDict(extra="ignore")

    source: Literal["training", "mnist"] = Field(
        description="training: the model's own training data (and test data), at training "
        "or export time; mnist: MNIST's, computed on first need for a model that came "
        "without a profile (trained before profiles were kept, or imported from such)."
    )
    computed_at: datetime
    inputs: int = Field(ge=0, description="Training images summarised.")
    answers: int = Field(ge=0, description="Test images the model answered.")
    ink_mass: Histogram
    bbox_height: Histogram
    bbox_width: Histogram
    centroid_offset: Histogram
    stroke_intensity: Histogram
    predicted_class: Histogram
    top_probability: Histogram

    def histograms(self) -> dict[str, Histogram]:
        """Every summary's histogram, by name, in :data:`SUMMARIES` order."""
        return {name: getattr(self, name) for name in SUMMARIES}


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
    reference_profile: ReferenceProfile | None = Field(
        None,
        description="What its inputs and answers looked like when it was made, for input "
        "drift (GET /models/{id}/drift); absent from older files, then computed from "
        "MNIST on first need and kept in the registry.",
    )


class SummaryDrift(BaseModel):
    """One summary's two histograms as shares of their totals, over the same bins."""

    edges: list[float]
    reference: list[float] = Field(description="Share of the reference in each bin.")
    served: list[float] = Field(description="Share of the window in each bin (0s if empty).")


class DriftReport(BaseModel):
    """``GET /models/{id}/drift``: the window of served inputs against the model's
    reference profile, by the population stability index of each summary."""

    model_id: UUID
    window: int = Field(ge=0, description="Inputs in the window (at most DRIFT_WINDOW).")
    psi: dict[str, float | None] = Field(
        description="The population stability index of each summary (null while the "
        "window is empty): sum over bins of (served - reference) x ln(served / reference)."
    )
    drifted: bool = Field(
        description="Some PSI is above the threshold and the window holds at least "
        "min_samples inputs."
    )
    threshold: float = Field(description="DRIFT_PSI_THRESHOLD.")
    min_samples: int = Field(description="DRIFT_MIN_SAMPLES.")
    moved: list[str] = Field(
        description="The summaries whose PSI is above the threshold, largest first "
        "(listed even while the window is below min_samples)."
    )
    since: datetime | None = Field(
        description="When the oldest input of the window arrived: the PSI describes what "
        "was served since then (null while the window is empty)."
    )
    reference_source: Literal["training", "mnist"]
    histograms: dict[str, SummaryDrift]


class Lineage(BaseModel):
    """A fine-tune's card fields: where it came from and how it does on the corrections."""

    parent_model_id: UUID | None = None
    feedback_count: int | None = None
    feedback_accuracy: float | None = None
    parent_feedback_accuracy: float | None = None


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
    registered_at: datetime | None = Field(
        None,
        description="When the registry received it: models are ordered by this, never by "
        "what a file says of itself (absent for models registered before it was kept).",
    )


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
        return ModelSummary.model_validate(
            self.model_dump(exclude={"confusion", "errors", "reference_profile"})
        )


class ModelList(BaseModel):
    items: list[ModelSummary]
    total: int
    offset: int
    limit: int


class AliasSource(StrEnum):
    api = "api"
    rollback = "rollback"
    gate = "gate"
    canary = "canary"


class AliasChange(BaseModel):
    """One row of an alias's history."""

    model_id: UUID
    previous_model_id: UUID | None
    at: datetime
    reason: str | None = None
    source: AliasSource
    candidate_model_id: UUID | None = Field(
        None,
        description="Rows of source canary: the split's candidate (promoted, or aborted: "
        "then model_id and previous_model_id are the unchanged target).",
    )


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
    canary = "canary"


class ModelNews(BaseModel):
    """One announcement on the ``announcements`` channel: API processes re-read what
    serves when they hear one."""

    kind: NewsKind
    model_id: UUID | None = None
    alias: str | None = None


class Serving(BaseModel):
    """Which model a request without ``model_id`` or ``alias`` gets."""

    model_id: UUID | None
    alias: str | None = Field(description="The serving alias, when it exists and serves.")
    fallback: bool = Field(
        description="The default had to fall back (the alias's or the newest model is broken)."
    )


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    detail: str | None = None
    serving: Serving | None = Field(None, description="What /predict serves by default.")
    refused_models: dict[str, str] = Field(
        default_factory=dict, description="Models that failed to load, with the reason."
    )
    store: Literal["ok", "unavailable"] | None = Field(
        None,
        description="The artifact store (models, checkpoints, corrections): models already "
        "loaded or cached keep serving while it is unavailable.",
    )
