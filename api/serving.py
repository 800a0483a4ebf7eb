"""Loaded models, kept in memory as float32, and the arithmetic of a prediction."""

import threading
from collections import OrderedDict

import numpy as np

from shared import mlp
from shared.schemas import ModelInfo
from shared.store import LoadedModel, ModelFileError, ModelStore


class ModelCache:
    """A small LRU of verified models, keyed by id and checksum."""

    def __init__(self, store: ModelStore, size: int) -> None:
        self.store = store
        self.size = size
        self._models: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.refused: dict[str, str] = {}
        """Models that failed to load, by id, with the reason (shown by /readyz)."""

    def get(self, info: ModelInfo) -> LoadedModel:
        key = (str(info.id), info.sha256)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        try:
            model = self.store.load(info.id, expected_sha256=info.sha256)
        except ModelFileError as exc:
            self.refused[str(info.id)] = str(exc)
            raise
        self.refused.pop(str(info.id), None)
        model = LoadedModel(
            model.id, model.weights.astype(np.float32), model.meta, model.sha256, model.size_bytes
        )
        with self._lock:
            self._models[key] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model


def predict(model: LoadedModel, images: list[list[float]]) -> np.ndarray:
    """Probabilities (n, 10) for 0..255 pixel rows."""
    x = np.asarray(images, dtype=np.float32)
    x *= np.float32(model.input_scale)
    return mlp.predict_proba(model.weights, x)
