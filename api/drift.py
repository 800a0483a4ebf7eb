"""What each API process contributes to the drift windows: the inputs it served,
buffered here and pushed to Redis in batches by a thread, off the response path.

A prediction costs one call, :meth:`DriftRecorder.observe`, which only appends
references to the request's arrays (no copy, no arithmetic, no Redis). The flusher
wakes every ``FLUSH_SECONDS``, or at once when ``FLUSH_INPUTS`` inputs wait,
summarises them (shared/ml/drift.py) and sends every model's new inputs in one round
trip (shared/drift/windows.py). Memory is bounded: per model only the newest
``DRIFT_WINDOW`` inputs are kept (older ones would be trimmed from the window anyway).
If Redis does not answer, that batch is dropped and counted: drift is a statistic,
and predictions never wait for it.
"""

import logging
import threading
import time
from collections import deque
from uuid import UUID

import numpy as np

from shared.drift.windows import DriftWindows
from shared.ml import drift

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
FLUSH_INPUTS = 256

_Batch = tuple[float, np.ndarray, np.ndarray]  # arrival time, images, probabilities


class DriftRecorder:
    """The per-process buffer of served inputs and its flusher thread."""

    def __init__(
        self,
        windows: DriftWindows,
        flush_seconds: float = FLUSH_SECONDS,
        flush_inputs: int = FLUSH_INPUTS,
    ) -> None:
        self.windows, self.size = windows, windows.size
        self.flush_seconds, self.flush_inputs = flush_seconds, flush_inputs
        self._pending: dict[UUID, deque[_Batch]] = {}
        self._counts: dict[UUID, int] = {}
        self._total = 0
        self._lock = threading.Lock()  # the buffer
        self._flushing = threading.Lock()  # one flush at a time: flush() returns when pushed
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        """Inputs lost because Redis did not take their batch."""

    def observe(self, model_id: UUID, images: np.ndarray, probabilities: np.ndarray) -> None:
        """Note what ``model_id`` answered: ``(n, 784)`` or ``(n, 28, 28)`` 0..255 pixels
        and their ``(n, 10)`` probabilities. Never raises, never waits on Redis."""
        try:
            if len(images) > self.size:
                images, probabilities = images[-self.size :], probabilities[-self.size :]
            n = len(images)
            with self._lock:
                batches = self._pending.setdefault(model_id, deque())
                batches.append((time.time(), images, probabilities))
                count = self._counts.get(model_id, 0) + n
                while count - len(batches[0][1]) >= self.size:  # older than the window
                    count -= len(batches.popleft()[1])
                self._total += count - self._counts.get(model_id, 0)
                self._counts[model_id] = count
                full = self._total >= self.flush_inputs
            if full:
                self._wake.set()
        except Exception:  # a statistic must never fail a prediction
            log.exception("drift: could not note a prediction")

    def flush(self) -> int:
        """Push everything noted so far; returns the inputs pushed. Waits for a flush
        already under way, so every input noted before the call is in Redis after it."""
        with self._flushing:
            with self._lock:
                pending, self._pending, self._counts, self._total = self._pending, {}, {}, 0
            batches = {}
            for model_id, noted in pending.items():
                times = np.concatenate([np.full(len(images), at) for at, images, _ in noted])
                images = np.concatenate([np.asarray(i).reshape(len(i), -1) for _, i, _ in noted])
                answers = np.concatenate([np.asarray(p).reshape(len(p), -1) for _, _, p in noted])
                batches[model_id] = (times, drift.rows(images, answers))
            inputs = sum(len(times) for times, _ in batches.values())
            if not inputs:
                return 0
            try:
                self.windows.push(batches)
            except Exception as exc:  # Redis away, or full: this batch is lost
                self.dropped += inputs
                log.warning("drift: %d served inputs not recorded: %s", inputs, exc)
                return 0
            return inputs

    def start(self) -> None:
        """Start the flusher thread (the app's start-up)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="drift-flush", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the flusher, pushing what is left (the app's shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("drift: flush failed")
