"""Input drift across processes: two real ``uvicorn api.main:app`` on one Redis, each
serving part of the traffic; the window is the sum of both, either process reports
the same drift, and ``/metrics`` of each says the same."""

import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime

import httpx
import numpy as np
import pytest

from shared.artifacts.local import LocalStore
from shared.data.mnist import Mnist
from shared.registry.files import ModelFiles
from shared.schemas.models import INPUT_SUMMARIES, SUMMARIES
from tests import models as model_files
from tests.digits import shifted, thickened
from tests.procs import free_port, redis_server, service_env, start_api, stop, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def apis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[httpx.Client]]]:
    """A model file in MODEL_DIR (each API registers it at start) and two APIs."""
    root = tmp_path_factory.mktemp("drift")
    model_id = uuid.uuid4()
    ModelFiles(LocalStore(root / "models")).save(
        model_id, model_files.weights(), model_files.meta(model_id)
    )
    with redis_server(root / "redis") as redis_url:
        env = service_env(redis_url, root / "models", DRIFT_WINDOW="1000")
        procs: list[subprocess.Popen] = []
        clients = []
        try:
            for name in ("a", "b"):
                port = free_port()
                procs.append(start_api(env, root / f"api-{name}.log", port))
                clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60))
            yield str(model_id), clients
        finally:
            for client in clients:
                client.close()
            for proc in procs:
                stop(proc)


def send(http: httpx.Client, model_id: str, images: np.ndarray, batch: int) -> None:
    """``images`` to /predict in batches of ``batch`` (1: one request per image)."""
    for start in range(0, len(images), batch):
        part = images[start : start + batch].astype(int).tolist()
        body = {"pixels": part[0]} if batch == 1 else {"images": part}
        response = http.post("/predict", json={**body, "model_id": model_id})
        assert response.status_code == 200, response.text


def drift(http: httpx.Client, model_id: str) -> dict:
    response = http.get(f"/models/{model_id}/drift")
    assert response.status_code == 200, response.text
    return response.json()


def settled(http: httpx.Client, model_id: str, after: datetime) -> dict | None:
    """The report once the window holds only inputs that arrived after ``after``."""
    report = drift(http, model_id)
    if report["window"] == 1000 and datetime.fromisoformat(report["since"]) >= after:
        return report
    return None


def gauge(http: httpx.Client, model_id: str, feature: str) -> float:
    pattern = rf'mnist_input_drift_psi{{feature="{feature}",model_id="{model_id}"}} (\S+)'
    found = re.search(pattern, http.get("/metrics").text)
    assert found is not None, feature
    return float(found.group(1))


def test_two_processes_fill_one_window(
    apis: tuple[str, list[httpx.Client]], mnist_data: Mnist
) -> None:
    model_id, (a, b) = apis
    digits = np.asarray(mnist_data.test_images[:1000])
    started = datetime.now().astimezone()
    send(a, model_id, digits[:300], batch=100)
    send(b, model_id, digits[300:350], batch=1)  # one request per image
    send(b, model_id, digits[350:700], batch=50)
    report = wait_until(
        lambda: (r := drift(a, model_id))["window"] == 700 and r, 30, "700 inputs in the window"
    )
    assert datetime.fromisoformat(report["since"]) >= started
    assert drift(b, model_id) == report  # one window, whichever process reads it
    send(b, model_id, digits[700:], batch=100)
    clean = wait_until(lambda: settled(a, model_id, started), 30, "the clean window")
    assert clean["drifted"] is False and clean["reference_source"] == "mnist"
    assert all(value < 0.1 for value in clean["psi"].values()), clean["psi"]

    changed = thickened(shifted(digits))
    turned = datetime.now().astimezone()
    send(a, model_id, changed[:400], batch=100)
    send(b, model_id, changed[400:], batch=200)
    report = wait_until(lambda: settled(b, model_id, turned), 30, "the changed window")
    assert report["window"] == 1000  # trimmed to DRIFT_WINDOW: the clean inputs are gone
    assert report["drifted"] is True and set(INPUT_SUMMARIES) <= set(report["moved"])
    assert drift(a, model_id) == report
    for feature in SUMMARIES:
        assert gauge(a, model_id, feature) == gauge(b, model_id, feature)
        assert gauge(a, model_id, feature) == pytest.approx(report["psi"][feature], rel=1e-6)


def test_an_unknown_model_is_a_404_everywhere(apis: tuple[str, list[httpx.Client]]) -> None:
    _, clients = apis
    for http in clients:
        assert http.get(f"/models/{uuid.uuid4()}/drift").status_code == 404
