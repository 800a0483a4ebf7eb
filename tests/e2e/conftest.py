"""A real stack on loopback: private redis-server, ``celery -A worker.app worker`` and
``uvicorn api.main:app``, the same commands docker-compose.yml runs."""

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.jobs import FINISHED, JobCalls
from tests.netns import Network, require_netns
from tests.procs import (
    free_port,
    service_env,
    start_api,
    start_redis,
    start_worker,
    stop,
    wait_until,
)

# Short leases, quick heartbeats and recovery passes, a checkpoint at every epoch: a killed
# or stopped worker's job is picked up again in seconds, so fault tests stay quick.
FAST_RECOVERY = {
    "LEASE_SECONDS": "3",
    "HEARTBEAT_SECONDS": "0.5",
    "RECOVERY_INTERVAL_SECONDS": "1",
    "CHECKPOINT_SECONDS": "0",
}
# A model in a few seconds, good enough to be told from another: for tests of what is
# done with models rather than of how well they learn.
TINY = {"epochs": 2, "train_size": 2000, "minibatches": 20, "input_scaling": "unit", "eta": 0.1}


@dataclass
class Redis:
    """A private redis-server on loopback that a test may stop and start again: on the
    same port, and back empty (it keeps nothing on disk). ``with Redis(dir) as redis:``
    starts it and stops it on the way out."""

    dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = start_redis(self.dir, self.port)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def __enter__(self) -> "Redis":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Stack(JobCalls):
    url: str
    redis_url: str
    model_dir: Path
    env: dict[str, str]
    logs: Path
    http: httpx.Client
    workers: list[subprocess.Popen] = field(default_factory=list)
    redis: Redis | None = None  # running_stack's, which a test may restart

    def wait(self, job_id: str, statuses: set[str] = FINISHED, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")

    def wait_epoch(self, job_id: str, epoch: int, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["epoch"] >= epoch or job["status"] in FINISHED:
                return job
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} never reached epoch {epoch}")

    def trained(self, **params: object) -> dict:
        """A job submitted and waited for, asserted to have succeeded."""
        job = self.wait(self.submit(**params))
        assert job["status"] == "succeeded", job
        return job

    def start_worker(self, *extra: str) -> subprocess.Popen:
        worker = start_worker(self.env, self.logs / "worker.log", *extra)
        self.workers.append(worker)
        return worker


@contextmanager
def running_stack(root: Path, **settings: str) -> Iterator[Stack]:
    """redis-server, uvicorn and one worker (``--concurrency 1``), with extra settings."""
    with Redis(root / "redis") as redis:
        env = service_env(redis.url, root / "models", **settings)
        port = free_port()
        api = start_api(env, root / "api.log", port)
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=30) as http:
            stack = Stack(url, redis.url, root / "models", env, root, http, redis=redis)
            stack.start_worker("--concurrency", "1")
            try:
                yield stack
            finally:
                for worker in stack.workers:
                    stop(worker)
                stop(api)


@contextmanager
def two_worker_stack(root: Path, **settings: str) -> Iterator[Stack]:
    """``running_stack`` with a second worker beside the first, both ready."""
    with running_stack(root, **settings) as stack:
        stack.start_worker("--concurrency", "1", "--hostname", "second@%h")
        log = stack.logs / "worker.log"
        wait_until(lambda: log.read_text().count("ready.") >= 2, 60, "two workers ready")
        yield stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture(scope="module")
def tiny_model(stack: Stack) -> str:
    """A TINY model of the module's stack."""
    return str(stack.trained(**TINY)["model_id"])


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    """A bridge for the test's hosts (network namespaces); skips without root."""
    require_netns()
    with Network(tmp_path / "hosts") as network:
        yield network
