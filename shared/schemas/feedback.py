"""Users' corrections ("this drawing is a 3"): the request, the entry, the checked file.

A correction is the 28x28 uint8 image the model saw, its true label, and optionally the
model that answered and what it predicted. Its file checks itself: its id is derived from
the sha256 of its pixels and label, and both are verified on every read
(:meth:`FeedbackFile.image`), so a changed byte is found and a file can name no other
correction. The same image with the same label is the same correction."""

import base64
import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.schemas.common import IMAGE_SIDE, N_PIXELS, utcnow
from shared.schemas.predict import Image, flatten_image

Label = Annotated[int, Field(ge=0, le=9, strict=True)]


NO_PREDICTION = "-"


"""The ``predicted`` part of a pair count when the client sent no prediction."""


class Source(StrEnum):
    pixels = "pixels"
    image = "image"


class FeedbackItem(BaseModel):
    """A correction without its pixels: the index entry and a row of ``GET /feedback``."""

    id: UUID = Field(description="Derived from the sha256 of the pixels and the label.")
    label: Label = Field(description="The true digit, as the user says.")
    predicted: Label | None = Field(None, description="What the model answered, if sent.")
    model_id: UUID | None = Field(None, description="The model that answered, if sent.")
    created_at: datetime
    source: Source = Field(description="Sent as pixels (JSON) or as a picture (multipart).")


class FeedbackDetail(FeedbackItem):
    """``GET /feedback/{id}``: the entry and the 28x28 image (0..255, light on black)."""

    pixels: list[list[int]]


class FeedbackFile(FeedbackItem):
    """What one file holds: the entry, the 784 pixel bytes (base64) and their sha256."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    pixels: str = Field(max_length=2 * N_PIXELS)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def image(self) -> np.ndarray:
        """The verified 28x28 uint8 image; :class:`CorruptCorrection` if anything is off."""
        try:
            raw = base64.b64decode(self.pixels, validate=True)
        except ValueError:
            raise CorruptCorrection(f"correction {self.id}: pixels are not base64") from None
        if len(raw) != N_PIXELS:
            raise CorruptCorrection(f"correction {self.id}: {len(raw)} pixel bytes, not 784")
        digest = _digest(raw, self.label)
        if digest != self.sha256 or _id_of(digest) != self.id:
            raise CorruptCorrection(f"correction {self.id}: integrity check failed")
        return np.frombuffer(raw, np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE).copy()

    def item(self) -> FeedbackItem:
        return FeedbackItem.model_validate(self.model_dump(include=set(FeedbackItem.model_fields)))


class FeedbackRequest(BaseModel):
    """The JSON body of ``POST /feedback`` (a picture goes as multipart instead)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"pixels": [0] * N_PIXELS, "label": 3}]},
    )

    pixels: Image = Field(description="784 values 0..255, or a 28x28 nested list.")
    label: Label
    model_id: UUID | None = None
    predicted: Label | None = None

    @field_validator("pixels", mode="before")
    @classmethod
    def _flat_pixels(cls, value: object) -> object:
        return flatten_image(value)


class FeedbackList(BaseModel):
    items: list[FeedbackItem]
    total: int
    offset: int
    limit: int


class PairCount(BaseModel):
    predicted: int | None = Field(description="What the model answered (null: not sent).")
    label: int
    count: int


class FeedbackStats(BaseModel):
    total: int
    by_label: dict[str, int] = Field(description="Corrections per true label, '0' to '9'.")
    by_prediction: list[PairCount] = Field(
        description="Corrections per (predicted, label), most frequent first."
    )


class CorruptCorrection(ValueError):
    """A file that is not an intact correction."""


def _digest(raw: bytes, label: int) -> str:
    return hashlib.sha256(raw + bytes([label])).hexdigest()


def _id_of(digest: str) -> UUID:
    return UUID(bytes=bytes.fromhex(digest)[:16])


def make_file(
    image: np.ndarray,
    label: int,
    source: Source,
    model_id: UUID | None = None,
    predicted: int | None = None,
    created_at: datetime | None = None,
) -> FeedbackFile:
    """A correction from a 28x28 (or 784) image of 0..255 values, rounded to uint8."""
    pixels = np.rint(np.asarray(image, dtype=np.float64)).astype(np.uint8).reshape(N_PIXELS)
    raw = pixels.tobytes()
    digest = _digest(raw, label)
    return FeedbackFile(
        id=_id_of(digest),
        label=label,
        predicted=predicted,
        model_id=model_id,
        created_at=created_at or utcnow(),
        source=source,
        pixels=base64.b64encode(raw).decode(),
        sha256=digest,
    )
