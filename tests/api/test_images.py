"""``POST /predict/image`` in-process over real Redis, with a model trained on real MNIST."""

import io
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api import imaging
from shared.data.mnist import Mnist
from tests.digits import random_rendering


def _upload(client: TestClient, data: bytes, **form: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/predict/image", files={"file": ("digit.png", data, "image/png")}, data=form
    )


def test_rendered_test_digits_come_back_to_their_class(
    client: TestClient, trained: uuid.UUID, mnist_data: Mnist
) -> None:
    """MNIST test digits, dark on light, scaled 2-6x and placed anywhere on a larger
    sheet, as PNG: classified about as well as the raw 28x28 digits themselves."""
    n = 150
    rng = np.random.default_rng(7)
    digits, labels = mnist_data.test_images[:n], mnist_data.test_labels[:n]
    raw = client.post("/predict", json={"images": digits.tolist()}).json()["labels"]
    got = []
    for digit in digits:
        response = _upload(client, random_rendering(digit, rng))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_id"] == str(trained)
        assert len(body["probabilities"]) == 10
        assert abs(sum(body["probabilities"]) - 1) < 1e-5
        pixels = np.array(body["pixels"])
        assert pixels.shape == (28, 28) and pixels.min() >= 0 and pixels.max() == 255
        got.append(body["label"])
    accuracy = np.mean(np.array(got) == labels)
    raw_accuracy = np.mean(np.array(raw) == labels)
    agreement = np.mean(np.array(got) == np.array(raw))
    assert raw_accuracy > 0.8
    print(f"accuracy {accuracy:.3f} (raw {raw_accuracy:.3f}), agreement {agreement:.3f}")
    assert accuracy > raw_accuracy - 0.06, (accuracy, raw_accuracy)
    assert agreement > 0.85
    metrics = client.get("/metrics").text
    counted = 'mnist_predictions_total{alias="",endpoint="/predict/image",variant="primary"}'
    assert f"{counted} {n}.0" in metrics


def test_pixels_are_what_the_model_saw(client: TestClient, trained: uuid.UUID) -> None:
    sheet = np.full((200, 200), 255, np.uint8)
    sheet[30:170, 95:105] = 0  # a dark bar on white: a "1"
    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, "PNG")
    body = _upload(client, buffer.getvalue(), model_id=str(trained)).json()
    again = client.post("/predict", json={"pixels": body["pixels"]}).json()
    # /predict writes float32 in its shortest form, this route float32 widened to float64
    assert again["probabilities"] == pytest.approx(body["probabilities"], rel=1e-6)
    assert again["label"] == body["label"]
    assert body["label"] == 1


def test_bad_uploads_are_clear_4xx(client: TestClient, trained: uuid.UUID) -> None:
    blank = io.BytesIO()
    Image.new("L", (64, 64), 255).save(blank, "PNG")
    cases = [
        (b"GIF89a but not really", 415, "not an image"),
        (b"", 422, "empty"),
        (blank.getvalue(), 422, "no digit"),
        (bytes(imaging.MAX_IMAGE_BYTES + 1), 413, f"{imaging.MAX_IMAGE_BYTES} bytes"),
    ]
    for data, status, message in cases:
        response = _upload(client, data)
        assert response.status_code == status, (status, response.text)
        assert response.headers["content-type"] == "application/json"
        assert message in response.json()["detail"]

    assert client.post("/predict/image").status_code == 422  # no file part
    assert client.post("/predict/image", json={"pixels": [0] * 784}).status_code == 422
    digit = io.BytesIO()
    Image.fromarray(np.eye(40, dtype=np.uint8) * 255).save(digit, "PNG")
    response = _upload(client, digit.getvalue(), model_id=str(uuid.uuid4()))
    assert response.status_code == 404
    assert _upload(client, digit.getvalue(), model_id="../etc").status_code == 422

    metrics = client.get("/metrics").text  # refused uploads are not predictions
    counted = 'mnist_predictions_total{alias="",endpoint="/predict/image",variant="primary"}'
    assert f"{counted} 0.0" in metrics


def test_no_model_yet_is_503(client: TestClient) -> None:
    digit = io.BytesIO()
    Image.fromarray(np.eye(40, dtype=np.uint8) * 255).save(digit, "PNG")
    response = _upload(client, digit.getvalue())
    assert response.status_code == 503 and "no trained model" in response.json()["detail"]


def test_an_alias_serves_a_picture_and_not_with_a_model_id(
    client: TestClient, trained: uuid.UUID
) -> None:
    digit = io.BytesIO()
    Image.fromarray(np.eye(40, dtype=np.uint8) * 255).save(digit, "PNG")
    assert client.put("/aliases/production", json={"model_id": str(trained)}).status_code == 200
    body = _upload(client, digit.getvalue(), alias="production").json()
    assert (body["model_id"], body["alias"]) == (str(trained), "production")
    default = _upload(client, digit.getvalue()).json()
    assert default["alias"] == "production"  # the serving alias, without asking
    both = _upload(client, digit.getvalue(), alias="production", model_id=str(trained))
    assert both.status_code == 422 and both.json()["detail"][0]["loc"] == ["body", "alias"]
    assert _upload(client, digit.getvalue(), alias="nope").status_code == 404
    assert _upload(client, digit.getvalue(), alias="Not A Name").status_code == 422
