"""Corrections as artifacts: ``<id>.json`` each, in the corrections' store (the artifact
store's ``feedback/``, or ``FEEDBACK_DIR`` when it is set)."""

import logging
import re
from collections.abc import Iterable
from uuid import UUID

import numpy as np
from pydantic import ValidationError

from shared.artifacts.base import ArtifactNotFound, ArtifactStore, ArtifactTooLarge
from shared.schemas.common import N_PIXELS
from shared.schemas.feedback import CorruptCorrection, FeedbackFile

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 16 * 1024
"""Largest correction file read (one is about 1.5 kB)."""
_NAME = re.compile(r"^([0-9a-f-]{36})\.json$")


def _key(feedback_id: UUID) -> str:
    # str(UUID) is hex and dashes: no id names a key outside the corrections'
    return f"{UUID(str(feedback_id))}.json"


class FeedbackFiles:
    """One artifact per correction."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    def write(self, record: FeedbackFile) -> None:
        self.store.put(_key(record.id), record.model_dump_json().encode())

    def read(self, feedback_id: UUID) -> FeedbackFile | None:
        """The verified record, ``None`` if there is none, :class:`CorruptCorrection`."""
        try:
            payload = self.store.get(_key(feedback_id), max_bytes=MAX_FILE_BYTES)
        except ArtifactNotFound:
            return None
        except ArtifactTooLarge:
            raise CorruptCorrection(f"correction {feedback_id}: not a valid record") from None
        try:
            record = FeedbackFile.model_validate_json(payload)
        except ValidationError:
            raise CorruptCorrection(f"correction {feedback_id}: not a valid record") from None
        record.image()  # verifies pixels, label and id
        if record.id != feedback_id:
            raise CorruptCorrection(f"correction {feedback_id}: the file names another id")
        return record

    def exists(self, feedback_id: UUID) -> bool:
        return self.store.exists(_key(feedback_id))

    def delete(self, feedback_id: UUID) -> bool:
        if not self.store.exists(_key(feedback_id)):
            return False
        self.store.delete(_key(feedback_id))
        return True

    def ids(self) -> list[UUID]:
        """Ids of the corrections present, sorted (strangers skipped)."""
        found = []
        for key in self.store.list():
            match = _NAME.match(key)
            if match:
                try:
                    found.append(UUID(match.group(1)))
                except ValueError:
                    continue
        return sorted(found)


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
