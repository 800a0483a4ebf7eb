"""Redis goes away and comes back empty (no persistence): the API says 503 meanwhile,
the idle worker reconnects, and the registry is rebuilt from the model files."""

from pathlib import Path

import pytest

from tests.e2e.conftest import FAST_RECOVERY, running_stack
from tests.procs import wait_until

pytestmark = pytest.mark.e2e

QUICK = {"epochs": 3, "train_size": 2000, "minibatches": 20, "eta": 0.01, "input_scaling": "unit"}


def test_redis_restart_and_data_loss(tmp_path: Path) -> None:
    with running_stack(tmp_path, **FAST_RECOVERY) as stack:
        http, redis = stack.http, stack.redis
        assert redis is not None
        first = stack.submit(**QUICK)
        assert stack.wait(first)["status"] == "succeeded"
        assert http.post("/predict", json={"pixels": [0] * 784}).json()["model_id"] == first

        redis.stop()
        down = http.post("/jobs", json=QUICK)
        assert down.status_code == 503 and down.headers["retry-after"]
        assert "id" not in down.json()
        assert http.get("/readyz").status_code == 503

        redis.start()  # back, with nothing in it
        assert http.get("/readyz").status_code == 200
        # a running worker notices the empty registry and rebuilds it from MODEL_DIR
        wait_until(lambda: http.get("/models").json()["total"] == 1, 30, "registry rebuilt")
        pixels = {"pixels": [0] * 784, "model_id": first}
        assert http.post("/predict", json=pixels).json()["model_id"] == first

        second = stack.submit(**QUICK)  # the idle worker reconnected to the broker
        assert stack.wait(second, timeout=60)["status"] == "succeeded"
        # and the API, subscribed again to the registry's news, serves the new model
        assert http.post("/predict", json={"pixels": [0] * 784}).json()["model_id"] == second
