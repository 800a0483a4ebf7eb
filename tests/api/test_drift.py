"""Input drift through the API in-process, over a real Redis: MNIST's own test digits
do not drift; shifted, thickened and photographed ones do, and the report names the
summaries that moved. (The window summed over two API processes is
tests/e2e/test_drift.py.)"""

import re
import uuid
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from shared.config import Settings
from shared.data.mnist import Mnist
from shared.registry.files import encode
from shared.registry.service import model_info
from shared.schemas.models import INPUT_SUMMARIES, SUMMARIES
from shared.services import Services
from tests import models as model_files
from tests.digits import photographed, shifted, thickened


def serve(client: TestClient, model_id: uuid.UUID, images: np.ndarray) -> dict:
    """Send ``images`` (one batch) to /predict, flush this process's buffer, read drift."""
    body = {"images": images.astype(int).tolist(), "model_id": str(model_id)}
    assert client.post("/predict", json=body).status_code == 200
    client.app.state.drift.flush()  # type: ignore[attr-defined]
    response = client.get(f"/models/{model_id}/drift")
    assert response.status_code == 200, response.text
    return response.json()


def test_mnist_test_digits_do_not_drift_and_changed_ones_do(
    client: TestClient, trained: uuid.UUID, mnist_data: Mnist
) -> None:
    digits = np.asarray(mnist_data.test_images[:1000])
    card = client.get(f"/models/{trained}").json()
    assert card["reference_profile"] is None  # registered without one, as older models are

    clean = serve(client, trained, digits)
    assert clean["window"] == 1000 and set(clean["psi"]) == set(SUMMARIES)
    assert all(value < 0.1 for value in clean["psi"].values()), clean["psi"]
    assert clean["drifted"] is False and clean["moved"] == []
    assert (clean["threshold"], clean["min_samples"]) == (0.2, 200)
    assert clean["reference_source"] == "mnist" and clean["since"] is not None
    profile = client.get(f"/models/{trained}").json()["reference_profile"]
    assert profile["source"] == "mnist" and profile["inputs"] == 60_000  # kept on the card

    # the window holds the last 1,000 inputs: each set below replaces the one before
    moved = serve(client, trained, shifted(digits))
    assert moved["drifted"] is True and moved["window"] == 1000
    assert "centroid_offset" in moved["moved"], moved["psi"]
    for unmoved in ("ink_mass", "bbox_height", "stroke_intensity"):  # a shift adds no ink
        assert unmoved not in moved["moved"], moved["psi"]
    assert moved["since"] > clean["since"]

    thick = serve(client, trained, thickened(digits))
    assert thick["drifted"] is True
    assert {"ink_mass", "stroke_intensity", "bbox_height", "bbox_width"} <= set(thick["moved"])

    both = serve(client, trained, thickened(shifted(digits)))
    assert both["drifted"] is True and set(INPUT_SUMMARIES) <= set(both["moved"])
    assert both["histograms"]["centroid_offset"]["reference"][0] == 1.0  # MNIST: centred
    assert both["histograms"]["centroid_offset"]["served"][0] == 0.0  # none of these

    metrics = client.get("/metrics").text
    for name in SUMMARIES:
        sample = rf'mnist_input_drift_psi{{feature="{name}",model_id="{trained}"}} (\S+)'
        found = re.search(sample, metrics)
        assert found is not None, name
        assert float(found.group(1)) == pytest.approx(both["psi"][name], rel=1e-6)
    assert f'mnist_input_drift_window{{model_id="{trained}"}} 1000.0' in metrics


def test_photographed_dark_on_light_digits_drift(
    client: TestClient, services: Services, trained: uuid.UUID, mnist_data: Mnist
) -> None:
    """Digits drawn dark on light paper and photographed, uploaded to /predict/image:
    its preparation inverts, crops, scales and centres them, yet their strokes are not
    MNIST's."""
    twin = uuid.uuid4()  # the same weights under another id: a window of its own
    files = services.models.files
    model = files.load(trained)
    files.save(twin, model.weights, model.meta.model_copy(update={"job_id": twin}))
    services.registry.put_model(model_info(files.load(twin)))
    rng = np.random.default_rng(21)
    for digit in mnist_data.test_images[:250]:
        upload = {"file": ("digit.jpg", photographed(digit, rng), "image/jpeg")}
        response = client.post("/predict/image", files=upload, data={"model_id": str(twin)})
        assert response.status_code == 200, response.text
    client.app.state.drift.flush()  # type: ignore[attr-defined]
    report = client.get(f"/models/{twin}/drift").json()
    assert report["window"] == 250 and report["drifted"] is True
    assert report["moved"][0] == "stroke_intensity", report["psi"]
    assert "ink_mass" in report["moved"]
    assert "centroid_offset" not in report["moved"]  # the preparation centres them


def test_an_unknown_model_is_a_404(client: TestClient) -> None:
    response = client.get(f"/models/{uuid.uuid4()}/drift")
    assert response.status_code == 404 and "not found" in response.json()["detail"]
    assert client.get("/models/not-a-uuid/drift").status_code == 422


def test_an_imported_model_without_a_profile_gets_one(client: TestClient) -> None:
    model_id = uuid.uuid4()
    payload = encode(model_files.weights(), model_files.meta(model_id))
    response = client.post("/models", files={"file": ("m.npz", payload)})
    assert response.status_code == 201, response.text
    assert response.json()["reference_profile"] is None
    report = client.get(f"/models/{model_id}/drift").json()
    assert report["window"] == 0 and report["reference_source"] == "mnist"
    assert all(value is None for value in report["psi"].values())
    assert report["drifted"] is False and report["since"] is None
    assert client.get(f"/models/{model_id}").json()["reference_profile"]["source"] == "mnist"


def test_without_mnist_a_missing_profile_is_a_503(settings: Settings, tmp_path: Path) -> None:
    no_mnist = settings.model_copy(update={"mnist_dir": tmp_path / "nothing-here"})
    with TestClient(create_app(no_mnist)) as client:
        model_id = model_files.register(client.app.state.services.models)  # type: ignore[attr-defined]
        response = client.get(f"/models/{model_id}/drift")
        assert response.status_code == 503
        assert "MNIST is not available" in response.json()["detail"]
