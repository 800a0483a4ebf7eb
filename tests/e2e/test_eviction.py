"""A Redis that may evict, or that is full (issue 17, point 10), against real
redis-servers and the real processes: refused at start with one line, reported by
``/readyz``, and a full Redis is a 507 with a clear body, never a 500."""

import subprocess
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from shared.config import Settings
from tests.procs import BIN, REPO, mnist_dir, redis_server, service_env

pytestmark = pytest.mark.e2e

EVICTING = ("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")


def _refusal(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port", "0"],
        [str(BIN / "celery"), "-A", "worker.app", "worker", "--concurrency", "1"],
    ],
    ids=["api", "worker"],
)
def test_an_evicting_redis_is_refused_at_start_with_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    with redis_server(tmp_path / "redis", extra=EVICTING) as url:
        env = service_env(url, tmp_path / "models")
        done = _refusal(command, env)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert "maxmemory-policy is allkeys-lru" in errors[0] and "noeviction" in errors[0]
    assert "Traceback" not in output


def test_readyz_says_when_redis_may_evict_and_a_full_redis_is_507(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as url:
        settings = Settings(
            redis_url=url,
            model_dir=tmp_path / "models",
            mnist_dir=mnist_dir(),
            mnist_download=False,
        )
        admin = redis.Redis.from_url(url)
        with TestClient(create_app(settings)) as client:
            assert client.get("/readyz").status_code == 200
            admin.config_set("maxmemory-policy", "volatile-lru")  # an operator changes it
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["status"] == "unavailable"
            assert "volatile-lru" in ready.json()["detail"]
            admin.config_set("maxmemory-policy", "noeviction")
            assert client.get("/readyz").status_code == 200

            used = int(admin.info("memory")["used_memory"])
            admin.config_set("maxmemory", used)  # full: every write is refused
            try:
                for answer in (
                    client.post("/jobs", json={"epochs": 1}),
                    client.post("/feedback", json={"pixels": [0] * 784, "label": 1}),
                ):
                    assert answer.status_code == 507, answer.text
                    assert "Redis" in answer.json()["detail"] and "full" in answer.json()["detail"]
            finally:
                admin.config_set("maxmemory", 0)
            assert client.post("/jobs", json={"epochs": 1}).status_code == 202
