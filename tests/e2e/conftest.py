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

from tests.procs import free_port, redis_server, service_env, start_api, start_worker, stop

FINISHED = {"succeeded", "failed", "cancelled"}


@dataclass
class Stack:
    url: str
    redis_url: str
    model_dir: Path
    env: dict[str, str]
    logs: Path
    http: httpx.Client
    workers: list[subprocess.Popen] = field(default_factory=list)

    def submit(self, **params: object) -> str:
        response = self.http.post("/jobs", json=params)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        response = self.http.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

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

    def start_worker(self, *extra: str) -> subprocess.Popen:
        worker = start_worker(self.env, self.logs / "worker.log", *extra)
        self.workers.append(worker)
        return worker


@contextmanager
def running_stack(root: Path, **settings: str) -> Iterator[Stack]:
    """redis-server, uvicorn and one worker (``--concurrency 1``), with extra settings."""
    with redis_server(root / "redis") as redis_url:
        env = service_env(redis_url, root / "models", **settings)
        port = free_port()
        api = start_api(env, root / "api.log", port)
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=30) as http:
            stack = Stack(url, redis_url, root / "models", env, root, http)
            stack.start_worker("--concurrency", "1")
            try:
                yield stack
            finally:
                for worker in stack.workers:
                    stop(worker)
                stop(api)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack
