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


# Modules that add a bridge or veth to the machine's network namespace (tests/netns.py),
# and the browser tests: Chromium aborts the requests it has in flight when the machine's
# interfaces change (net::ERR_NETWORK_CHANGED, seen on CI as a page whose scripts never
# loaded), so these run one after another on one worker, never beside each other.
ROOT_NETWORK = "root-network"
ROOT_NETWORK_MODULES = frozenset(
    f"tests/e2e/{name}.py"
    for name in (
        "test_browser",
        "test_browser_canary",
        "test_browser_dataset",
        "test_browser_drift",
        "test_browser_feedback",
        "test_browser_lifecycle",
        "test_browser_lineage",
        "test_browser_sweeps",
        "test_hosts",
        "test_netns",
        "test_sentinel_harness",
    )
)


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def scope_of(nodeid: str) -> str:
    """What a worker takes as a whole: the test's module, or all the root-network ones."""
    module = _module(nodeid)
    return ROOT_NETWORK if module in ROOT_NETWORK_MODULES else module


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Whole modules to a worker (a module shares its stack), the root-network modules
    as one. (xdist's own ``--dist loadgroup`` groups nothing under pytest 9:
    pytest-dev/pytest-xdist#1386.)"""
    from xdist.scheduler import LoadFileScheduling

    class ModuleScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest first: the compose stack, the root-network modules, the other
    end-to-end modules, then the quick ones. ``./scripts/test`` hands modules to two
    workers in this order, so the long ones start at once and the quick ones fill the
    gaps at the end (sorting is stable: a module's own order is kept). A test that
    drives a browser or makes hosts must be in a ROOT_NETWORK_MODULES module."""
    for item in items:
        uses = {"browser", "net"} & set(item.fixturenames)
        if uses and _module(item.nodeid) not in ROOT_NETWORK_MODULES:
            raise pytest.UsageError(f"{item.nodeid} uses {uses}: list it in ROOT_NETWORK_MODULES")

    def weight(item: pytest.Item) -> int:
        if item.get_closest_marker("compose"):
            return 0
        if _module(item.nodeid) in ROOT_NETWORK_MODULES:
            return 1
        return 2 if item.get_closest_marker("e2e") else 3

    items.sort(key=weight)
