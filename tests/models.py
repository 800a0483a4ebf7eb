"""Small model files for tests: valid ones, and ones that are not models."""

import io
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

from shared import mlp
from shared.registry import ModelRegistry, model_info
from shared.schemas import ModelMeta, TrainParams
from shared.store import ModelStore

HIDDEN = 5


def weights(seed: int = 0, hidden: int = HIDDEN) -> mlp.Weights:
    return mlp.init_weights(784, hidden, 10, np.random.default_rng(seed), np.float32)


def meta(
    model_id: uuid.UUID | None = None,
    test_accuracy: float | None = 0.9,
    minutes_ago: float = 0,
    hidden: int = HIDDEN,
) -> ModelMeta:
    return ModelMeta(
        created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
        job_id=model_id or uuid.uuid4(),
        params=TrainParams(n_hidden=hidden, epochs=1),
        train_accuracy=test_accuracy,
        test_accuracy=test_accuracy,
        input_scale=1.0,
    )


def npz(arrays: dict[str, np.ndarray], meta_json: str) -> bytes:
    """An .npz with exactly these arrays and this metadata string."""
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(meta_json), **arrays)
    return buffer.getvalue()


def register(
    store: ModelStore,
    registry: ModelRegistry,
    test_accuracy: float | None = 0.9,
    minutes_ago: float = 0,
    seed: int = 0,
) -> uuid.UUID:
    """Save a small valid model and register it, as the worker does."""
    model_id = uuid.uuid4()
    store.save(model_id, weights(seed), meta(model_id, test_accuracy, minutes_ago))
    registry.put_model(model_info(store.load(model_id)))
    return model_id
