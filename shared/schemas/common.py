"""What every record shares: the image geometry, the clock, an error body."""

from datetime import UTC, datetime

from pydantic import BaseModel

N_PIXELS = 784
N_CLASSES = 10


IMAGE_SIDE = 28


def utcnow() -> datetime:
    return datetime.now(UTC)


class ErrorBody(BaseModel):
    detail: str
