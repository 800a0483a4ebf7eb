"""The FastAPI app in-process (TestClient) over a real, private Redis."""

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from shared.config import Settings
from shared.data.mnist import Mnist
from shared.schemas.params import TrainParams
from shared.services import Services
from tests import models


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def trained(services: Services, mnist_data: Mnist) -> uuid.UUID:
    """A small real model, stored and registered as the worker would."""
    params = TrainParams(epochs=5, train_size=5000, minibatches=25, eta=0.01, input_scaling="unit")
    return models.store_trained(services.models, params, mnist_data)


def images(data: Mnist, n: int) -> list[list[int]]:
    return np.asarray(data.test_images[:n]).tolist()
