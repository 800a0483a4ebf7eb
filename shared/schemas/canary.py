"""Canary and shadow traffic on an alias: the request that starts a split, the split as
every API process reads it, and its statistics as clients see them.

A *split* sends live traffic served through an alias to a candidate model beside the
alias's target (the *primary*): a share of it in ``canary`` mode (the candidate
answers those requests), or a copy of all of it in ``shadow`` mode (the primary answers
every request; the candidate predicts the same inputs off the response path)."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

PERCENT_MIN, PERCENT_MAX = 1, 99


class SplitMode(StrEnum):
    canary = "canary"
    shadow = "shadow"


class Variant(StrEnum):
    """Which side of a split answered a request (``primary`` also when no split runs)."""

    primary = "primary"
    canary = "canary"


class CanaryRequest(BaseModel):
    """The body of ``PUT /aliases/{name}/canary``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model_id": "6f1c2d3e-0000-4000-8000-000000000000", "percent": 10},
                {"model_id": "6f1c2d3e-0000-4000-8000-000000000000", "mode": "shadow"},
            ]
        },
    )

    model_id: UUID = Field(description="The candidate: a registered, intact model.")
    mode: SplitMode = Field(
        SplitMode.canary,
        description="canary: the candidate answers `percent` of the requests; shadow: the "
        "primary answers all, the candidate predicts the same inputs beside it.",
    )
    percent: Annotated[int, Field(strict=True)] | None = Field(
        None,
        description=f"Share of the requests the candidate answers, {PERCENT_MIN}..{PERCENT_MAX} "
        "(canary only; not with shadow).",
    )
    reason: str | None = Field(None, max_length=500, description="Why, kept with the split.")

    @model_validator(mode="after")
    def _percent_fits_the_mode(self) -> Self:
        if self.mode is SplitMode.shadow:
            if self.percent is not None:
                raise ValueError("percent is not given with mode shadow (it sees every request)")
        elif self.percent is None:
            raise ValueError(f"a canary needs percent ({PERCENT_MIN}..{PERCENT_MAX})")
        elif not PERCENT_MIN <= self.percent <= PERCENT_MAX:
            raise ValueError(f"percent must be {PERCENT_MIN}..{PERCENT_MAX}, not {self.percent}")
        return self


class Split(BaseModel):
    """A running split, as stored (the ``canaries`` hash) and read by every API process."""

    id: str = Field(description="Names this split: the X-Client-Id hash and the statistics.")
    alias: str
    model_id: UUID = Field(description="The candidate.")
    primary_model_id: UUID = Field(description="The alias's target when the split started.")
    mode: SplitMode
    percent: int | None = Field(description="The candidate's share (canary mode).")
    started_at: datetime
    updated_at: datetime
    reason: str | None = None


Interval = tuple[float, float]


class VariantStats(BaseModel):
    """What one side of a split did, summed over every API process."""

    requests: int = Field(description="Requests it answered (shadow: the primary answers all).")
    images: int = Field(description="Images in those requests.")
    mean_top_probability: float | None = Field(
        description="Shadow: the mean of its highest probability over the images compared."
    )
    corrections: int = Field(
        description="Corrections (POST /feedback with model_id and predicted) of its answers."
    )
    correct: int = Field(description="Of those, answers the user confirmed (label = predicted).")
    accuracy: float | None = Field(description="correct / corrections.")
    accuracy_interval: Interval | None = Field(
        description="The Wilson 95% interval of the accuracy."
    )


class ShadowStats(BaseModel):
    compared: int = Field(description="Images the candidate predicted beside the primary.")
    agreed: int = Field(description="Of those, images where both gave the same label.")
    agreement: float | None = Field(description="agreed / compared.")
    agreement_interval: Interval | None = Field(
        description="The Wilson 95% interval of the agreement."
    )
    dropped: int = Field(
        description="Images not compared: the process's shadow queue was full (or the "
        "candidate could not be loaded)."
    )


class SplitStats(BaseModel):
    primary: VariantStats
    canary: VariantStats
    shadow: ShadowStats


class SplitView(Split):
    """``GET /aliases/{name}/canary``: the split and its statistics."""

    stats: SplitStats
