"""Users' corrections ("this drawing is a 3"): files are the source of truth, Redis the index.

A correction is the 28x28 uint8 image the model saw, its true label, and optionally the
model that answered and what it predicted. Like models (shared/store.py), each one is a
file, written atomically, that checks itself: its id is derived from the sha256 of its
pixels and label, and both are verified on every read, so a changed byte is found and a
file can name no other correction. The same image with the same label is the same
correction: sending it again finds the first one.

Redis holds an index (:class:`FeedbackIndex`) for listing, filtering and counting:
an entry per correction, a sorted set of all ids and one per label, and a count per
(predicted, label) pair. Adding is one Lua script that checks ``FEEDBACK_MAX`` and the
duplicate and writes all of these together; removing is one script as well. The index
is rebuilt from the folder whenever Redis lost it (:meth:`Corrections.rebuild`).
"""

import base64
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, cast
from uuid import UUID

import numpy as np
import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.files import write_bytes_atomic
from shared.keys import Keys
from shared.schemas import IMAGE_SIDE, N_PIXELS, Image, _flatten_image, utcnow

log = logging.getLogger(__name__)

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
        return _flatten_image(value)


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


class StoreFull(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the feedback store holds its maximum of {limit} corrections (FEEDBACK_MAX); "
            "delete some first"
        )
        self.limit = limit


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


class FeedbackFiles:
    """``<root>/<id>.json``, one per correction."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, feedback_id: UUID) -> Path:
        # str(UUID) is hex and dashes: no id names a file outside root
        return self.root / f"{UUID(str(feedback_id))}.json"

    def write(self, record: FeedbackFile) -> None:
        write_bytes_atomic(self.path(record.id), record.model_dump_json().encode())

    def read(self, feedback_id: UUID) -> FeedbackFile | None:
        """The verified record, ``None`` if there is no file, :class:`CorruptCorrection`."""
        try:
            payload = self.path(feedback_id).read_bytes()
        except FileNotFoundError:
            return None
        try:
            record = FeedbackFile.model_validate_json(payload)
        except ValidationError:
            raise CorruptCorrection(f"correction {feedback_id}: not a valid record") from None
        record.image()  # verifies pixels, label and id
        if record.id != feedback_id:
            raise CorruptCorrection(f"correction {feedback_id}: the file names another id")
        return record

    def exists(self, feedback_id: UUID) -> bool:
        return self.path(feedback_id).exists()

    def delete(self, feedback_id: UUID) -> bool:
        try:
            self.path(feedback_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def ids(self) -> list[UUID]:
        """Ids of the files present, sorted (temp files and strangers skipped)."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.glob("*.json"):
            try:
                found.append(UUID(path.stem))
            except ValueError:
                continue
        return sorted(found)


_ADD = """
-- KEYS: item, all, by label, pairs
-- ARGV: item json, score, id, max (0: no limit), pair field
if redis.call('exists', KEYS[1]) == 1 then return 'exists' end
local limit = tonumber(ARGV[4])
if limit > 0 and redis.call('zcard', KEYS[2]) >= limit then return 'full' end
redis.call('set', KEYS[1], ARGV[1])
redis.call('zadd', KEYS[2], ARGV[2], ARGV[3])
redis.call('zadd', KEYS[3], ARGV[2], ARGV[3])
redis.call('hincrby', KEYS[4], ARGV[5], 1)
return 'created'
"""

_REMOVE = """
-- KEYS: item, all, by label, pairs;  ARGV: id, pair field
if redis.call('del', KEYS[1]) == 0 then return 0 end
redis.call('zrem', KEYS[2], ARGV[1])
redis.call('zrem', KEYS[3], ARGV[1])
if redis.call('hincrby', KEYS[4], ARGV[2], -1) <= 0 then redis.call('hdel', KEYS[4], ARGV[2]) end
return 1
"""


def _pair(item: FeedbackItem) -> str:
    predicted = NO_PREDICTION if item.predicted is None else str(item.predicted)
    return f"{predicted}:{item.label}"


class FeedbackIndex:
    """The Redis side: entries, ids by time and by label, pair counts."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)

    def _keys_of(self, item: FeedbackItem) -> list[str]:
        return [
            self.keys.feedback_item(item.id),
            self.keys.feedback_all(),
            self.keys.feedback_label(item.label),
            self.keys.feedback_pairs(),
        ]

    def add(self, item: FeedbackItem, limit: int = 0) -> str:
        """``created``, ``exists`` or ``full`` (only with a ``limit``), decided atomically."""
        args: list[str | float | int] = [
            item.model_dump_json(),
            item.created_at.timestamp(),
            str(item.id),
            limit,
            _pair(item),
        ]
        return cast(str, self._add(keys=self._keys_of(item), args=args))

    def remove(self, item: FeedbackItem) -> bool:
        return bool(self._remove(keys=self._keys_of(item), args=[str(item.id), _pair(item)]))

    def get(self, feedback_id: UUID) -> FeedbackItem | None:
        raw = self.redis.get(self.keys.feedback_item(feedback_id))
        return FeedbackItem.model_validate_json(raw) if raw else None

    def list(self, label: int | None, offset: int, limit: int) -> tuple[list[FeedbackItem], int]:
        """Newest first, optionally one label's."""
        key = self.keys.feedback_all() if label is None else self.keys.feedback_label(label)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrevrange(key, offset, offset + limit - 1)
            pipe.zcard(key)
            ids, total = pipe.execute()
        raws = self.redis.mget([self.keys.feedback_item(i) for i in ids]) if ids else []
        return [FeedbackItem.model_validate_json(raw) for raw in raws if raw], int(total)

    def count(self) -> int:
        return int(self.redis.zcard(self.keys.feedback_all()))

    def ids(self) -> set[UUID]:
        return {
            UUID(i) for i in cast(list[str], self.redis.zrange(self.keys.feedback_all(), 0, -1))
        }

    def stats(self) -> FeedbackStats:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.zcard(self.keys.feedback_all())
            for label in range(10):
                pipe.zcard(self.keys.feedback_label(label))
            pipe.hgetall(self.keys.feedback_pairs())
            total, *counts, pairs = pipe.execute()
        rows = []
        for pair, count in cast(dict[str, str], pairs).items():
            predicted, _, true_label = pair.partition(":")
            rows.append(
                PairCount(
                    predicted=None if predicted == NO_PREDICTION else int(predicted),
                    label=int(true_label),
                    count=int(count),
                )
            )
        rows.sort(
            key=lambda row: (-row.count, row.label, -1 if row.predicted is None else row.predicted)
        )
        return FeedbackStats(
            total=int(total),
            by_label={str(label): int(n) for label, n in enumerate(counts)},
            by_prediction=rows,
        )

    def is_indexed(self) -> bool:
        return bool(self.redis.exists(self.keys.feedback_indexed()))

    def mark_indexed(self) -> None:
        self.redis.set(self.keys.feedback_indexed(), utcnow().isoformat())


@dataclass(frozen=True)
class Added:
    item: FeedbackItem
    created: bool


class Corrections:
    """Files and index together: what the API and the worker use."""

    def __init__(self, files: FeedbackFiles, index: FeedbackIndex, limit: int) -> None:
        self.files, self.index, self.limit = files, index, limit

    @classmethod
    def connect(cls, client: redis.Redis, keys: Keys, root: Path, limit: int) -> "Corrections":
        return cls(FeedbackFiles(root), FeedbackIndex(client, keys), limit)

    def add(self, record: FeedbackFile) -> Added:
        """Write the file, then index it; the same image and label again finds the first.

        The file comes first (it is the truth): a crash between the two leaves a file the
        next rebuild indexes. Beyond ``limit`` the new file is removed again and
        :class:`StoreFull` raised.
        """
        existing = self.index.get(record.id)
        if existing is not None:
            if self.files.exists(record.id):
                return Added(existing, created=False)
            self.index.remove(existing)  # a stale entry: its file was deleted
            existing = None
        if self.files.exists(record.id):
            try:
                on_disk = self.files.read(record.id)
            except CorruptCorrection:
                on_disk = None  # replaced below by the intact one
            if on_disk is not None:  # the index lost it: index the file, keep its facts
                self.index.add(on_disk.item())
                return Added(on_disk.item(), created=False)
        if self.index.count() >= self.limit:
            raise StoreFull(self.limit)
        self.files.write(record)
        outcome = self.index.add(record.item(), self.limit)
        if outcome == "full":
            self.files.delete(record.id)
            raise StoreFull(self.limit)
        if outcome == "exists":  # a twin request won the race: same pixels, same label
            first = self.index.get(record.id)
            return Added(first or record.item(), created=False)
        return Added(record.item(), created=True)

    def delete(self, feedback_id: UUID) -> bool:
        """The file first, then the index entry; false if neither existed."""
        item = self.index.get(feedback_id)
        if item is None:
            try:
                record = self.files.read(feedback_id)
            except CorruptCorrection:
                record = None
            item = record.item() if record is not None else None
        removed_file = self.files.delete(feedback_id)
        removed_entry = self.index.remove(item) if item is not None else False
        return removed_file or removed_entry

    def read(self, feedback_id: UUID) -> FeedbackFile | None:
        return self.files.read(feedback_id)

    def rebuild(self) -> tuple[int, int]:
        """Reconcile the index with the folder both ways: index every intact file it lacks
        (whatever ``FEEDBACK_MAX``), drop entries whose file is gone; then mark the index
        complete. Returns (added, dropped)."""
        on_disk = set(self.files.ids())
        known = self.index.ids()
        added = dropped = 0
        for feedback_id in sorted(on_disk - known):
            try:
                record = self.files.read(feedback_id)
            except CorruptCorrection as exc:
                log.warning("not indexing %s: %s", feedback_id, exc)
                continue
            if record is None:
                continue  # deleted meanwhile
            if self.index.add(record.item()) == "created":
                added += 1
            if not self.files.exists(feedback_id):  # a delete ran between read and add
                self.index.remove(record.item())
        for feedback_id in sorted(known - on_disk):
            item = self.index.get(feedback_id)
            if item is not None and not self.files.exists(feedback_id):
                self.index.remove(item)
                dropped += 1
        self.index.mark_indexed()
        if added or dropped:
            log.info(
                "feedback index: %d correction(s) indexed from %s, %d dropped",
                added,
                self.files.root,
                dropped,
            )
        return added, dropped

    def rebuild_if_lost(self) -> tuple[int, int] | None:
        """Rebuild when Redis does not remember a complete index (it lost its data)."""
        if self.index.is_indexed():
            return None
        return self.rebuild()


def load_images(
    files: FeedbackFiles, ids: Iterable[UUID]
) -> tuple[np.ndarray, np.ndarray, list[UUID]]:
    """Images (n, 784) uint8 and labels of the corrections still present and intact, with
    their ids; the others are skipped (deleted by a moderator, or damaged: logged)."""
    images, labels, kept = [], [], []
    for feedback_id in ids:
        try:
            record = files.read(feedback_id)
        except CorruptCorrection as exc:
            log.warning("skipping correction %s: %s", feedback_id, exc)
            continue
        if record is None:
            continue
        images.append(record.image().reshape(N_PIXELS))
        labels.append(record.label)
        kept.append(feedback_id)
    if not images:
        return np.zeros((0, N_PIXELS), np.uint8), np.zeros(0, np.uint8), []
    return np.stack(images), np.asarray(labels, np.uint8), kept
