"""Fixtures shared by every test: a private, real redis-server and real MNIST."""

from collections.abc import Iterator

import pytest
import redis

from shared import mnist
from tests.procs import mnist_dir, redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def registry(redis_url: str) -> Iterator["Registry"]:  # type: ignore[name-defined]  # noqa: F821
    from shared.registry import Registry  # lazily: the registry split left it behind

    reg = Registry.from_url(redis_url, prefix="test:")
    reg.redis.flushdb()  # our private server: nothing else lives there
    yield reg
    reg.redis.close()


@pytest.fixture
def raw_redis(registry: "Registry") -> redis.Redis:  # type: ignore[name-defined]  # noqa: F821
    return registry.redis


@pytest.fixture(scope="session")
def mnist_data() -> mnist.Mnist:
    directory = mnist_dir()
    if mnist.missing_files(directory):
        pytest.skip(f"real MNIST not found in {directory} (set MNIST_DIR)")
    return mnist.load(directory)
