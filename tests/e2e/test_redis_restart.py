"""Redis goes away and comes back empty (no persistence): the API says 503 meanwhile,
the idle worker reconnects, and the registry is rebuilt from the model files."""

from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_faults import FAST_RECOVERY
from tests.procs import (
    free_port,
    service_env,
    start_api,
    start_redis,
    start_worker,
    stop,
    wait_until,
)

pytestmark = pytest.mark.e2e

QUICK = {"epochs": 3, "train_size": 2000, "minibatches": 20, "eta": 0.01, "input_scaling": "unit"}


def test_redis_restart_and_data_loss(tmp_path: Path) -> None:
    port = free_port()
    redis = start_redis(tmp_path / "redis", port)
    env = service_env(f"redis://127.0.0.1:{port}/0", tmp_path / "models", **FAST_RECOVERY)
    api_port = free_port()
    api = start_api(env, tmp_path / "api.log", api_port)
    worker = start_worker(env, tmp_path / "worker.log", "--concurrency", "1")
    http = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30)
    stack = Stack(http.base_url, env["REDIS_URL"], tmp_path / "models", env, tmp_path, http)
    try:
        first = stack.submit(**QUICK)
        assert stack.wait(first)["status"] == "succeeded"
        assert http.post("/predict", json={"pixels": [0] * 784}).json()["model_id"] == first

        stop(redis)
        down = http.post("/jobs", json=QUICK)
        assert down.status_code == 503 and down.headers["retry-after"]
        assert "id" not in down.json()
        assert http.get("/readyz").status_code == 503

        redis = start_redis(tmp_path / "redis", port)  # back, with nothing in it
        assert http.get("/readyz").status_code == 200
        # a running worker notices the empty registry and rebuilds it from MODEL_DIR
        wait_until(lambda: http.get("/models").json()["total"] == 1, 30, "registry rebuilt")
        pixels = {"pixels": [0] * 784, "model_id": first}
        assert http.post("/predict", json=pixels).json()["model_id"] == first

        second = stack.submit(**QUICK)  # the idle worker reconnected to the broker
        assert stack.wait(second, timeout=60)["status"] == "succeeded"
        # and the API, subscribed again to the registry's news, serves the new model
        assert http.post("/predict", json={"pixels": [0] * 784}).json()["model_id"] == second
    finally:
        http.close()
        stop(worker)
        stop(api)
        stop(redis)
