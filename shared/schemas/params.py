"""A job's hyper-parameters and the named presets: what the trainer (shared/ml) takes."""

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator
from pydantic.json_schema import JsonDict

MAX_EPOCHS = 5000
"""The most epochs a job may run, so the bound of every count of epochs."""

Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""A seed of a random generator: numpy's and Optuna's take 32 bits."""


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


def searchable(
    low: float | None = None,
    high: float | None = None,
    *,
    log: bool = False,
    suggested: bool = False,
) -> JsonDict:
    """``x-search`` in a field's JSON schema (``/openapi.json``): a hyper-parameter a sweep
    may usefully search, with where to start, so that clients (the page's sweep form)
    read it instead of keeping a copy: ``low``..``high`` (``log``: on a log scale) for a
    number, the field's own values for a choice; ``suggested`` fields make up the search
    offered first. Advice, not a rule: ``POST /sweeps`` searches any field within its
    bounds (shared/sweeps/request.py checks them)."""
    hint: JsonDict = {}
    if low is not None and high is not None:
        hint.update(low=low, high=high, log=log)
    if suggested:
        hint["suggested"] = True
    return {"x-search": hint}


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
        50,
        ge=1,
        le=1024,
        description="Hidden units: neurons in the one hidden layer.",
        json_schema_extra=searchable(16, 256, suggested=True),
    )
    l1: float = Field(
        0.0,
        ge=0,
        le=10,
        description="L1 penalty l1·Σ|w|: pushes weights toward 0, sparser (not biases).",
        json_schema_extra=searchable(),
    )
    l2: float = Field(
        0.1,
        ge=0,
        le=10,
        description="L2 penalty l2/2·Σw²: keeps weights small (not biases).",
        json_schema_extra=searchable(0.0001, 0.1, log=True),
    )
    epochs: int = Field(
        1000, ge=1, le=MAX_EPOCHS, description="Passes over the training set; time grows with it."
    )
    eta: float = Field(
        0.001,
        gt=0,
        le=10,
        description="Learning rate η: the size of each gradient step at first.",
        json_schema_extra=searchable(0.001, 0.2, log=True, suggested=True),
    )
    alpha: float = Field(
        0.001,
        ge=0,
        lt=1,
        description="Momentum: share of the previous step added to each step.",
        json_schema_extra=searchable(0, 0.9),
    )
    decrease_const: float = Field(
        0.00001,
        ge=0,
        le=1,
        description="Learning-rate decay d: how fast η shrinks per epoch.",
        json_schema_extra=searchable(0.00001, 0.1, log=True),
    )
    lr_schedule: LrSchedule = Field(
        LrSchedule.compound,
        description="How η decays in epoch i: compound η /= 1+d·i each epoch (the book's code); "
        "inverse η = η0/(1+d·i).",
        json_schema_extra=searchable(),
    )
    minibatches: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Mini-batches per epoch: weight updates per pass.",
        json_schema_extra=searchable(20, 600, log=True),
    )
    shuffle: bool = Field(
        True,
        description="Reshuffle the training set every epoch.",
        json_schema_extra=searchable(),
    )
    seed: Seed = Field(1, description="Seed of the job's random generator: same seed, same run.")
    input_scaling: InputScaling = Field(
        InputScaling.none,
        description="What the network sees of a pixel: none 0..255 (the book), unit 0..1.",
        json_schema_extra=searchable(),
    )
    validation_fraction: float = Field(
        0.0, ge=0, le=0.5, description="Share of the training set held out to report accuracy."
    )
    train_size: int | None = Field(
        None, ge=100, le=60_000, description="Train on the first N images only (quick runs)."
    )
    dtype: Literal["float32", "float64"] = Field(
        "float32",
        description="Arithmetic precision: float32 is faster, float64 the book's.",
        json_schema_extra=searchable(),
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


class EarlyStopping(BaseModel):
    """``early_stopping`` of ``POST /jobs``: stop when validation accuracy stalls."""

    model_config = ConfigDict(extra="forbid")

    patience: StrictInt = Field(
        ge=1,
        le=MAX_EPOCHS,
        description="Epochs in a row without improvement before training stops.",
    )
    min_delta: StrictFloat = Field(
        0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Least gain in validation accuracy that counts as an improvement.",
    )
