"""Images in, predictions out: ``POST /predict`` and the dataset's test images."""

from typing import Annotated, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.schemas.canary import Variant
from shared.schemas.common import IMAGE_SIDE, N_PIXELS
from shared.schemas.models import AliasName

PREDICT_BATCH_MAX = 1000


"""Most images one ``POST /predict`` may carry (about 3 MB of JSON)."""


class DatasetImage(BaseModel):
    index: int = Field(description="Index into the MNIST test set.")
    label: int
    pixels: list[list[int]] = Field(description="28 rows of 28 values, 0..255, white on black.")


class DatasetSamples(BaseModel):
    per_class: int
    items: list[DatasetImage] = Field(description="The first per_class test images of 0..9.")


Pixel = Annotated[float, Field(ge=0, le=255, allow_inf_nan=False, strict=True)]


Image = Annotated[list[Pixel], Field(min_length=N_PIXELS, max_length=N_PIXELS)]


def flatten_image(value: object) -> object:
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
        return flatten_image(value)

    @field_validator("images", mode="before")
    @classmethod
    def _flat_images(cls, value: object) -> object:
        return [flatten_image(image) for image in value] if isinstance(value, list) else value

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
    variant: Variant = Field(
        description="The side of the alias's canary split that answered: canary (the "
        "candidate) or primary (also when no split runs)."
    )


class BatchPrediction(BaseModel):
    labels: list[int]
    probabilities: list[list[float]]
    model_id: UUID
    alias: str | None
    variant: Variant
