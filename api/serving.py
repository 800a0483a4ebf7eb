"""Loaded models, kept in memory as float32, and the arithmetic of a prediction."""

import threading
from collections import OrderedDict
from uuid import UUID

import numpy as np

from shared import mlp
from shared.schemas import ModelInfo
from shared.store import LoadedModel, ModelFileError, ModelStore


class ModelCache:
    """A small LRU of verified models, keyed by id: a registered model never changes."""

    def __init__(self, store: ModelStore, size: int) -> None:
        self.store = store
        self.size = size
        self._models: OrderedDict[UUID, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.refused: dict[str, str] = {}
        """Models that failed to load, by id, with the reason (shown by /readyz)."""

    def cached(self, model_id: UUID) -> LoadedModel | None:
        """The model if it is in memory already: no need to read its registry entry."""
        with self._lock:
            model = self._models.get(model_id)
            if model is not None:
                self._models.move_to_end(model_id)
            return model

    def get(self, info: ModelInfo) -> LoadedModel:
        """The model, loaded and checked against the registry's sha256 if not in memory."""
        cached = self.cached(info.id)
        if cached is not None:
            return cached
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
            self._models[info.id] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model


def predict(model: LoadedModel, images: np.ndarray) -> np.ndarray:
    """Probabilities (n, 10) for 0..255 pixel rows (n, 784)."""
    x = np.asarray(images, dtype=np.float32) * np.float32(model.input_scale)
    return mlp.predict_proba(model.weights, x)
