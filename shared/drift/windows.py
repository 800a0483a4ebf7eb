"""The drift windows in Redis: per model, the summaries of the last ``DRIFT_WINDOW``
inputs it served, contributed by every API process.

A window is a capped list (``drift:<model id>``), oldest first; each element is one
input: its arrival time (Unix seconds) and its seven summaries
(:data:`~shared.schemas.models.SUMMARIES`), space-separated. API processes buffer what
they serve and push it in batches (api/drift.py): one round trip carries every model's
new inputs, appended and trimmed by a script that writes nothing for a model the
registry no longer has (a deletion in between does not leave a window behind).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast
from uuid import UUID

import numpy as np
import redis

from shared.redisdb.keys import Keys
from shared.schemas.models import SUMMARIES

_PUSH = """
-- KEYS: model entry, window, models with a window;  ARGV: size, id, element...
if redis.call('exists', KEYS[1]) == 0 then return 0 end
for i = 3, #ARGV, 1000 do
  redis.call('rpush', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('ltrim', KEYS[2], -tonumber(ARGV[1]), -1)
redis.call('sadd', KEYS[3], ARGV[2])
return 1
"""
COLUMNS = 1 + len(SUMMARIES)
"""Numbers in one element: the arrival time, then the summaries."""


@dataclass(frozen=True)
class Window:
    """A model's window as read: arrival times ``(n,)`` and summaries ``(n, 7)``."""

    times: np.ndarray
    rows: np.ndarray

    @property
    def since(self) -> datetime | None:
        """When its oldest input arrived (None when it is empty)."""
        if not len(self.times):
            return None
        return datetime.fromtimestamp(float(self.times.min()), UTC)


def encode(times: np.ndarray, rows: np.ndarray) -> list[str]:
    """One element per input: ``"<time> <summary> ..."``."""
    return [
        f"{t:.3f} " + " ".join(f"{v:.6g}" for v in row)
        for t, row in zip(times.tolist(), rows.tolist(), strict=True)
    ]


def decode(elements: list[str]) -> Window:
    """Elements back to arrays; one that does not read (another version's) is skipped."""
    values = []
    for element in elements:
        parts = element.split()
        if len(parts) == COLUMNS:
            try:
                values.append([float(p) for p in parts])
            except ValueError:
                continue
    table = np.array(values, dtype=np.float64).reshape(-1, COLUMNS)
    return Window(table[:, 0], table[:, 1:])


class DriftWindows:
    """Every model's window of served inputs, ``size`` inputs at most each."""

    def __init__(self, client: redis.Redis, keys: Keys, size: int) -> None:
        self.redis, self.keys, self.size = client, keys, size
        self._push = client.register_script(_PUSH)

    def push(self, batches: Mapping[UUID, tuple[np.ndarray, np.ndarray]]) -> None:
        """Append each model's new inputs (arrival times ``(n,)``, summaries ``(n, 7)``)
        to its window and trim it to the newest ``size``, in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for model_id, (times, rows) in batches.items():
                elements = encode(times[-self.size :], rows[-self.size :])
                if not elements:
                    continue
                self._push(
                    keys=[
                        self.keys.model(model_id),
                        self.keys.drift_window(model_id),
                        self.keys.drift_models(),
                    ],
                    args=[self.size, str(model_id), *elements],
                    client=pipe,
                )
            pipe.execute()

    def read(self, model_id: UUID) -> Window:
        """The model's window (empty if it has none)."""
        elements = cast(list[str], self.redis.lrange(self.keys.drift_window(model_id), 0, -1))
        return decode(elements[-self.size :])

    def observed(self) -> list[UUID]:
        """The models that have a window."""
        ids = []
        for raw in cast(set[str], self.redis.smembers(self.keys.drift_models())):
            try:
                ids.append(UUID(raw))
            except ValueError:
                continue
        return sorted(ids)
