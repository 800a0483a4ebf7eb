"""Fixtures shared by every test: a private, real redis-server, a private SeaweedFS (S3)
and real MNIST."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared.config import Settings
from shared.data import mnist
from shared.jobs.leases import Leases
from shared.jobs.store import JobStore
from shared.redisdb.client import connect
from shared.redisdb.keys import Keys
from shared.registry.aliases import Aliases
from shared.registry.service import Models
from shared.registry.store import ModelRegistry
from shared.services import Services
from tests.procs import mnist_dir, redis_server
from tests.seaweed import Seaweed, seaweed_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """A private SeaweedFS on loopback (tests/seaweed.py), started on first use (~4 s);
    create a bucket per test or module with ``s3_server.create_bucket()``."""
    with seaweed_server(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


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
def settings(redis_url: str, tmp_path: Path, keys: Keys, redis_client: redis.Redis) -> Settings:
    """Settings over the tests' Redis (flushed first) and ``tmp_path / "models"``."""
    return Settings(
        redis_url=redis_url,
        key_prefix=keys.prefix,
        model_dir=tmp_path / "models",
        mnist_dir=mnist_dir(),
        mnist_download=False,
    )


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    """What a worker or the API uses, over the tests' Redis and a local artifact store."""
    built = Services.connect(settings)
    yield built
    built.close()


@pytest.fixture(scope="session")
def mnist_data() -> mnist.Mnist:
    directory = mnist_dir()
    if mnist.missing_files(directory):
        pytest.skip(f"real MNIST not found in {directory} (set MNIST_DIR)")
    return mnist.load(directory)


@pytest.fixture
def models(services: Services) -> Models:
    """Model files (under ``tmp_path / "models"``) and the registry together."""
    return services.models


@pytest.fixture
def aliases(registry: ModelRegistry) -> Aliases:
    return Aliases(registry)


ROOT_NETWORK_GROUP = "root-network"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order and group the modules for ``./scripts/test`` (``--dist loadgroup``).

    Each module is an xdist group of its own, so a worker takes a whole module and its
    shared stack, except the ``root_network`` modules, which share one group: a bridge
    or veth added to the machine's namespace makes Chromium abort the requests it has
    in flight (net::ERR_NETWORK_CHANGED, seen on CI as a page whose scripts never
    loaded), so the browser modules never run beside the modules that add them.

    Then the longest first: the compose stack, the root-network group, the other
    end-to-end modules, the quick ones; the long ones start at once and the quick ones
    fill the gaps at the end (sorting is stable: a module's own order is kept)."""
    for item in items:
        uses_network = {"browser", "net"} & set(item.fixturenames)
        marked = item.get_closest_marker("root_network") is not None
        if uses_network and not marked:
            raise pytest.UsageError(f"{item.nodeid} uses {uses_network}: mark it root_network")
        group = ROOT_NETWORK_GROUP if marked else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))

    def weight(item: pytest.Item) -> int:
        if item.get_closest_marker("compose"):
            return 0
        if item.get_closest_marker("root_network"):
            return 1
        return 2 if item.get_closest_marker("e2e") else 3

    items.sort(key=weight)
