"""Redis blips and permanent storage errors while a job trains (issue: hardening):
real processes, a real Redis stopped and started, a real read-only mount."""

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Stack, running_stack
from tests.procs import free_port, service_env, start_api, start_redis, start_worker, stop

pytestmark = pytest.mark.e2e

LONG = {"epochs": 40, "train_size": 20_000, "minibatches": 40, "input_scaling": "unit"}


@contextmanager
def persistent_stack(root: Path) -> Iterator[tuple[Stack, int]]:
    port = free_port()
    redis = start_redis(root / "redis", port, persistent=True)
    env = service_env(f"redis://127.0.0.1:{port}/0", root / "models", CHECKPOINT_SECONDS="0")
    api_port = free_port()
    api = start_api(env, root / "api.log", api_port)
    worker = start_worker(env, root / "worker.log", "--concurrency", "1")
    http = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30)
    stack = Stack(http.base_url, env["REDIS_URL"], root / "models", env, root, http, [worker])
    try:
        yield stack, port
    finally:
        http.close()
        stop(worker)
        stop(api)
        stop(redis)


def test_redis_blips_cost_a_training_job_nothing(tmp_path: Path) -> None:
    """Three restarts of Redis (data kept) during training: the job pauses, resumes on
    the same attempt, and ends with exactly one history row per epoch."""
    with persistent_stack(tmp_path) as (stack, port):
        job_id = stack.submit(**LONG)
        epoch = 2
        redis = None
        for pause in (0.3, 1.5, 3.0):
            job = stack.wait_epoch(job_id, epoch)
            assert job["status"] == "running", job
            subprocess.run(["pkill", "-f", f"redis-server 127.0.0.1:{port}"], check=True)
            subprocess.run(["sleep", str(pause)], check=True)
            redis = start_redis(tmp_path / "redis", port, persistent=True)
            epoch = job["epoch"] + 3
        job = stack.wait(job_id, timeout=180)
        assert job["status"] == "succeeded", job
        assert [row["epoch"] for row in job["history"]] == list(range(1, LONG["epochs"] + 1))
        assert job["attempts"] == 1  # paused, never restarted
        log = (tmp_path / "worker.log").read_text()
        assert "resuming from checkpoint" not in log
        if redis is not None:
            stop(redis)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def _can_mount() -> bool:
    probe = subprocess.run(["mount", "--version"], capture_output=True)
    return probe.returncode == 0 and Path("/proc/self/mountinfo").exists()


@pytest.mark.skipif(not _can_mount(), reason="needs mount (root) for a read-only volume")
def test_a_read_only_model_dir_fails_the_job_once_with_the_cause(tmp_path: Path) -> None:
    with running_stack(tmp_path, CHECKPOINT_SECONDS="0") as stack:
        (stack.model_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        with read_only(stack.model_dir):
            job_id = stack.submit(epochs=3, train_size=1000, minibatches=10)
            job = stack.wait(job_id, timeout=60)
        assert job["status"] == "failed", job
        assert job["attempts"] == 1
        assert "read-only" in job["error"].lower()
        assert str(stack.model_dir) not in job["error"]  # the cause, not the layout
