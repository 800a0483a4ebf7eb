"""Fixtures shared by every test: a private, real redis-server and real MNIST."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared import mnist
from shared.jobstore import JobStore
from shared.keys import Keys
from shared.leases import Leases
from shared.redis_conn import connect
from shared.registry import ModelRegistry
from shared.store import ModelStore
from tests.procs import mnist_dir, redis_server
from worker.jobs import Stores


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def keys() -> Keys:
    return Keys("test:")


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(redis_url)
    client.flushdb()  # our private server: nothing else lives there
    yield client
    client.close()


@pytest.fixture
def raw_redis(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


@pytest.fixture
def jobs(redis_client: redis.Redis, keys: Keys) -> JobStore:
    return JobStore(redis_client, keys)


@pytest.fixture
def leases(redis_client: redis.Redis, keys: Keys) -> Leases:
    return Leases(redis_client, keys)


@pytest.fixture
def registry(redis_client: redis.Redis, keys: Keys) -> ModelRegistry:
    return ModelRegistry(redis_client, keys)


@pytest.fixture
def stores(jobs: JobStore, leases: Leases, registry: ModelRegistry, tmp_path: Path) -> Stores:
    """What a worker uses, over the tests' Redis; its model files in ``tmp_path / "models"``."""
    return Stores(jobs, leases, registry, ModelStore(tmp_path / "models"))


@pytest.fixture(scope="session")
def mnist_data() -> mnist.Mnist:
    directory = mnist_dir()
    if mnist.missing_files(directory):
        pytest.skip(f"real MNIST not found in {directory} (set MNIST_DIR)")
    return mnist.load(directory)
