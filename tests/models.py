"""Small model files for tests: valid ones, and ones that are not models."""

import io
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

from shared.data.mnist import Mnist
from shared.ml import mlp, training
from shared.registry.service import Models, model_info
from shared.schemas.models import ModelMeta
from shared.schemas.params import TrainParams

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
    models: Models,
    test_accuracy: float | None = 0.9,
    minutes_ago: float = 0,
    seed: int = 0,
) -> uuid.UUID:
    """Save a small valid model and register it, as the worker does (registered now:
    the registry orders by registration, whatever the file's date)."""
    model_id = uuid.uuid4()
    models.files.save(model_id, weights(seed), meta(model_id, test_accuracy, minutes_ago))
    models.registry.put_model(model_info(models.files.load(model_id)))
    return model_id


def small_params(**changes: object) -> TrainParams:
    """Seconds of training: 2 epochs on 2,000 MNIST images, minibatches of 100, pixels
    scaled to 0..1; ``changes`` on top."""
    base = {"epochs": 2, "train_size": 2000, "minibatches": 20, "input_scaling": "unit"}
    return TrainParams.model_validate({**base, **changes})


def trained_meta(
    model_id: uuid.UUID, params: TrainParams, test_accuracy: float | None = None
) -> ModelMeta:
    """The metadata the worker writes for a model it trained from ``params``."""
    return ModelMeta(
        created_at=datetime.now(UTC),
        job_id=model_id,
        params=params,
        train_accuracy=None,
        test_accuracy=test_accuracy,
        input_scale=params.input_scaling.factor,
    )


def store_trained(models: Models, params: TrainParams, data: Mnist) -> uuid.UUID:
    """Train a real model on ``data``, store and register it as the worker does."""
    state = training.train(params, training.split(params, data))
    model_id = uuid.uuid4()
    models.files.save(model_id, state.weights, trained_meta(model_id, params))
    models.registry.put_model(model_info(models.files.load(model_id)))
    return model_id


def train(models: Models, data: Mnist, seed: int) -> uuid.UUID:
    """A weak real model (2 epochs on 2,000 MNIST images, a third of a second), stored and
    registered as the worker does: two seeds agree on most test images, not all."""
    return store_trained(models, small_params(n_hidden=30, eta=0.01, seed=seed), data)
