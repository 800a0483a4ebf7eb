"""Flower, the Celery monitoring UI that compose runs under the ``monitoring`` profile,
started with the compose service's command against a real stack: it sees the worker."""

import subprocess

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.procs import BIN, REPO, free_port, stop, wait_until

pytestmark = pytest.mark.e2e


def test_flower_lists_the_worker(stack: Stack) -> None:
    port = free_port()
    flower = subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "worker.app",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
        cwd=REPO,
        env={**stack.env, "FLOWER_UNAUTHENTICATED_API": "true"},
        stdout=(stack.logs / "flower.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(f"{url}/healthcheck") == "OK", 60, "flower /healthcheck")
        workers = wait_until(
            lambda: httpx.get(f"{url}/api/workers", params={"refresh": "true"}, timeout=10).json(),
            60,
            "flower to see the worker",
        )
        assert any(name.startswith("celery@") for name in workers), workers
    finally:
        stop(flower)


def _get(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None
