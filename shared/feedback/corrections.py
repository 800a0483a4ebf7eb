"""Users' corrections: files are the source of truth, Redis the index.

Like models, each correction is an artifact written atomically that checks itself
(shared/schemas/feedback.py); Redis holds an index for listing, filtering and counting
(shared/feedback/index.py), rebuilt from the files whenever Redis lost it
(:meth:`Corrections.rebuild`)."""

import logging
from dataclasses import dataclass
from uuid import UUID

import redis

from shared.artifacts.base import ArtifactStore
from shared.feedback.files import FeedbackFiles
from shared.feedback.index import FeedbackIndex
from shared.redisdb.keys import Keys
from shared.schemas.feedback import CorruptCorrection, FeedbackFile, FeedbackItem

log = logging.getLogger(__name__)


class StoreFull(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the feedback store holds its maximum of {limit} corrections (FEEDBACK_MAX); "
            "delete some first"
        )
        self.limit = limit


@dataclass(frozen=True)
class Added:
    item: FeedbackItem
    created: bool


class Corrections:
    """Files and index together: what the API and the worker use."""

    def __init__(self, files: FeedbackFiles, index: FeedbackIndex, limit: int) -> None:
        self.files, self.index, self.limit = files, index, limit

    @classmethod
    def connect(
        cls, client: redis.Redis, keys: Keys, store: ArtifactStore, limit: int
    ) -> "Corrections":
        return cls(FeedbackFiles(store), FeedbackIndex(client, keys), limit)

    def add(self, record: FeedbackFile) -> Added:
        """Write the file, then index it; the same image and label again finds the first.

        The file comes first (it is the truth): a crash between the two leaves a file the
        next rebuild indexes. The index's script enforces ``limit`` atomically
        (:class:`StoreFull`, the new file removed again). Twins (the same image and label
        sent at once) take turns under a per-correction lock, so exactly one of them
        creates it and the others find it. Whichever way, the entry is confirmed on the
        replicas before this returns (``REDIS_MIN_REPLICAS``; ``NotReplicated``: the
        entry stays, and sending it again finds it).
        """
        added = self._add(record)
        self.index.confirm(added.item.id)
        return added

    def _add(self, record: FeedbackFile) -> Added:
        with self.index.adding(record.id):
            existing = self.index.get(record.id)
            if existing is not None:
                if self.files.exists(record.id):
                    return Added(existing, created=False)
                self.index.remove(existing)  # a stale entry: its file was deleted
            try:
                stored = self.files.read(record.id)
            except CorruptCorrection:
                stored = None  # replaced below by the intact one
            if stored is not None:  # the index lost it: index the file, keep its facts
                self.index.add(stored.item())
                return Added(stored.item(), created=False)
            if self.index.count() >= self.limit:
                raise StoreFull(self.limit)
            self.files.write(record)
            if self.index.add(record.item(), self.limit) == "full":
                self.files.delete(record.id)
                raise StoreFull(self.limit)
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
            with self.index.adding(feedback_id):  # not beside an add of the same one
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
                self.files.store.uri,
                dropped,
            )
        return added, dropped

    def rebuild_if_lost(self) -> tuple[int, int] | None:
        """Rebuild when Redis does not remember a complete index (it lost its data)."""
        if self.index.is_indexed():
            return None
        return self.rebuild()
