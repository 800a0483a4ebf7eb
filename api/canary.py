"""This API process's part in the aliases' canary and shadow splits: it counts what each
side answered, runs the shadow candidate off the response path, links corrections to
the side that answered, and adds its counts to Redis in batches.

The request path only adds to a dict under a lock and, for a shadow, offers the images
to a bounded queue (never waiting: a full queue drops them and counts the drop). One
thread takes what the queue holds, every 50 ms at most, and predicts it with the
candidate as one batch (a wake-up per request would take the GIL from the event loop
once per request); another adds this
process's counts to Redis every ``CANARY_FLUSH_SECONDS``, one round trip for all
splits (shared/registry/canary.py refuses counts for a split that has ended). At
shutdown the counts left are added too, so a restart loses none of them.
"""

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import redis

from api.serving import ModelCache, Served, predict
from shared.registry.canary import Counts, Splits, answered, compared, corrected, dropped
from shared.registry.files import LoadedModel
from shared.registry.store import ModelRegistry
from shared.schemas.canary import Split, SplitMode, Variant
from shared.schemas.feedback import FeedbackItem

log = logging.getLogger(__name__)

SHADOW_PAUSE = 0.05
"""How long the shadow thread lets work gather after it found none: it then takes all
that came as one batch, instead of being woken (and taking the GIL) per request."""


@dataclass(frozen=True)
class ShadowJob:
    split: Split
    images: np.ndarray
    """(n, 784) float32 pixels, as the primary saw them."""
    probabilities: np.ndarray
    """The primary's answer, (n, 10)."""


class Tally:
    """Counts not yet in Redis, per (alias, split id); safe across threads."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], Counts] = {}
        self._lock = threading.Lock()

    def add(self, split: Split, counts: Counts) -> None:
        with self._lock:
            self._merge((split.alias, split.id), counts)

    def take(self) -> dict[tuple[str, str], Counts]:
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def put_back(self, batches: dict[tuple[str, str], Counts]) -> None:
        """Counts that could not be added (Redis away): kept for the next flush."""
        with self._lock:
            for key, counts in batches.items():
                self._merge(key, counts)

    def _merge(self, key: tuple[str, str], counts: Counts) -> None:
        mine = self._counts.setdefault(key, {})
        for field, increment in counts.items():
            mine[field] = mine.get(field, 0) + increment


class ShadowQueue:
    """Work for the shadow candidate, bounded by images (a batch is up to 1,000): an
    offer beyond the bound is refused at once, never waited for. The shadow thread
    takes everything queued at once and predicts it as one batch."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._jobs: list[ShadowJob] = []
        self._images = 0
        self._held = False
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Give no work out until :meth:`release`: once this returns, nothing more is
        taken (a hook for tests that fill the queue, not a setting)."""
        with self._lock:
            self._held = True

    def release(self) -> None:
        with self._lock:
            self._held = False

    def offer(self, job: ShadowJob) -> bool:
        n = len(job.images)
        with self._lock:
            if self._images + n > self.capacity:
                return False
            self._jobs.append(job)
            self._images += n
        return True

    def take_all(self) -> list[ShadowJob]:
        """Everything queued (nothing while held)."""
        with self._lock:
            if self._held:
                return []
            jobs, self._jobs, self._images = self._jobs, [], 0
        return jobs

    def clear(self) -> list[ShadowJob]:
        with self._lock:
            jobs, self._jobs, self._images = self._jobs, [], 0
        return jobs


class Traffic:
    def __init__(
        self,
        splits: Splits,
        registry: ModelRegistry,
        cache: ModelCache,
        queue_images: int,
        flush_seconds: float,
    ) -> None:
        self.splits, self.registry, self.cache = splits, registry, cache
        self.flush_seconds = flush_seconds
        self.tally = Tally()
        self.queue = ShadowQueue(queue_images)
        self.on_dropped: Callable[[int], None] = lambda images: None
        """Told the images each drop loses (the API's ``mnist_shadow_dropped_total``)."""
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._flush_lock = threading.Lock()
        self._said_down = False

    # the request path

    def observe(self, served: Served, images: np.ndarray, probabilities: np.ndarray) -> None:
        """After a prediction: count it for its side; give a shadow's candidate its copy."""
        split = served.split
        if split is None:
            return
        n = len(probabilities)
        self.tally.add(split, answered(served.variant, n))
        shadow = split.mode is SplitMode.shadow and served.variant is Variant.primary
        if shadow and not self.queue.offer(ShadowJob(split, images, probabilities)):
            self._drop(split, n)

    def correction(self, item: FeedbackItem, splits: Iterable[Split]) -> None:
        """A correction of an answer a running split's side gave (it names the model that
        answered and what it predicted)."""
        if item.model_id is None or item.predicted is None:
            return
        for split in splits:
            if item.model_id == split.model_id:
                variant = Variant.canary
            elif item.model_id == split.primary_model_id:
                variant = Variant.primary
            else:
                continue
            self.tally.add(split, corrected(variant, item.predicted == item.label))

    # the threads

    def start(self) -> None:
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=self._shadow, name="shadow", daemon=True),
            threading.Thread(target=self._flusher, name="canary-flush", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the threads; the images still queued are compared here; the counts left
        are added to Redis."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(10)
        self._compare_all(self.queue.clear())
        self.flush()

    def flush(self) -> None:
        """Add this process's counts to Redis (kept for the next try if it is away)."""
        with self._flush_lock:  # the thread and a request's read may flush at once
            batches = self.tally.take()
            if not batches:
                return
            try:
                self.splits.add(batches)
            except redis.RedisError as exc:
                self.tally.put_back(batches)
                if not self._said_down:
                    log.warning("canary statistics wait for Redis: %s", exc)
                    self._said_down = True
                return
            self._said_down = False

    def _flusher(self) -> None:
        while not self._stopping.wait(self.flush_seconds):
            self.flush()

    def _shadow(self) -> None:
        while not self._stopping.is_set():
            jobs = self.queue.take_all()
            if jobs:
                self._compare_all(jobs)
            else:
                self._stopping.wait(SHADOW_PAUSE)

    def _compare_all(self, jobs: list[ShadowJob]) -> None:
        by_split: dict[str, list[ShadowJob]] = {}
        for job in jobs:
            by_split.setdefault(job.split.id, []).append(job)
        for same in by_split.values():
            self._compare(same)

    def _compare(self, jobs: list[ShadowJob]) -> None:
        """The candidate's answers for the jobs of one split, as one batch."""
        split = jobs[0].split
        images = np.concatenate([job.images for job in jobs])
        mine = np.concatenate([job.probabilities for job in jobs])
        try:
            theirs = predict(self._candidate(split), images)
        except Exception as exc:  # the thread must outlive any one batch
            log.warning("shadow: candidate %s did not predict: %s", split.model_id, exc)
            self._drop(split, len(images))
            return
        agreed = int((mine.argmax(axis=1) == theirs.argmax(axis=1)).sum())
        top_mine, top_theirs = float(mine.max(axis=1).sum()), float(theirs.max(axis=1).sum())
        self.tally.add(split, compared(len(images), agreed, top_mine, top_theirs))

    def _candidate(self, split: Split) -> LoadedModel:
        model = self.cache.cached(split.model_id)
        if model is not None:
            return model
        info = self.registry.get_model(split.model_id)
        if info is None or info.deleting:
            raise LookupError("not registered")
        return self.cache.get(info)

    def _drop(self, split: Split, images: int) -> None:
        self.tally.add(split, dropped(images))
        self.on_dropped(images)
