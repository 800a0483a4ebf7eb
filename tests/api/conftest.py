"""The FastAPI app in-process (TestClient) over a real, private Redis."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from shared import training
from shared.config import Settings
from shared.keys import Keys
from shared.mnist import Mnist
from shared.registry import ModelRegistry, model_info
from shared.schemas import ModelMeta, TrainParams, utcnow
from shared.store import ModelStore


@pytest.fixture
def settings(redis_url: str, tmp_path: Path, keys: Keys, redis_client: redis.Redis) -> Settings:
    """Settings of the app under test; asking for ``redis_client`` flushes Redis first."""
    return Settings(redis_url=redis_url, key_prefix=keys.prefix, model_dir=tmp_path / "models")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def trained(settings: Settings, registry: ModelRegistry, mnist_data: Mnist) -> uuid.UUID:
    """A small real model, stored and registered as the worker would."""
    params = TrainParams(epochs=5, train_size=5000, minibatches=25, eta=0.01, input_scaling="unit")
    data = training.split(params, mnist_data)
    state = training.train(params, data)
    model_id = uuid.uuid4()
    store = ModelStore(settings.model_dir)
    meta = ModelMeta(
        created_at=utcnow(),
        job_id=model_id,
        params=params,
        train_accuracy=None,
        test_accuracy=None,
        input_scale=params.input_scaling.factor,
    )
    store.save(model_id, state.weights, meta)
    registry.put_model(model_info(store.load(model_id)))
    return model_id


def images(data: Mnist, n: int) -> list[list[int]]:
    return np.asarray(data.test_images[:n]).tolist()
