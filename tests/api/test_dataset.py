"""``/dataset/*``: MNIST test images for the web page, read from MNIST_DIR, never downloaded."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from shared.config import Settings
from shared.data.mnist import Mnist
from tests.procs import mnist_dir


@pytest.fixture
def dataset_client(settings: Settings, mnist_data: Mnist) -> Iterator[TestClient]:
    app_settings = settings.model_copy(update={"mnist_dir": mnist_dir()})
    with TestClient(create_app(app_settings)) as client:
        yield client


def test_samples_are_the_first_test_images_of_each_class(
    dataset_client: TestClient, mnist_data: Mnist
) -> None:
    response = dataset_client.get("/dataset/samples", params={"per_class": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["per_class"] == 3 and len(body["items"]) == 30
    assert [item["label"] for item in body["items"]] == [d for d in range(10) for _ in range(3)]
    for item in body["items"]:
        pixels = np.array(item["pixels"])
        assert pixels.shape == (28, 28) and pixels.min() >= 0 and pixels.max() <= 255
        assert mnist_data.test_labels[item["index"]] == item["label"]
        assert (pixels.ravel() == mnist_data.test_images[item["index"]]).all()
    zeros = [item["index"] for item in body["items"][:3]]
    assert zeros == list(np.flatnonzero(mnist_data.test_labels == 0)[:3])


def test_one_test_image_by_index(dataset_client: TestClient, mnist_data: Mnist) -> None:
    for index in (0, 9999):
        body = dataset_client.get(f"/dataset/test/{index}").json()
        assert body["index"] == index and body["label"] == mnist_data.test_labels[index]
        assert np.array(body["pixels"]).ravel().tolist() == mnist_data.test_images[index].tolist()


@pytest.mark.parametrize("path", ["/test/10000", "/test/-1", "/test/abc", "/test/1.5"])
def test_bad_index_is_refused(dataset_client: TestClient, path: str) -> None:
    assert dataset_client.get(f"/dataset{path}").status_code in (404, 422)


@pytest.mark.parametrize("per_class", [0, 21, "x"])
def test_bad_per_class_is_422(dataset_client: TestClient, per_class: object) -> None:
    response = dataset_client.get("/dataset/samples", params={"per_class": per_class})
    assert response.status_code == 422
    assert "per_class" in response.json()["detail"][0]["loc"]


def test_missing_mnist_answers_503_and_is_not_downloaded(
    settings: Settings, tmp_path: Path
) -> None:
    empty = tmp_path / "no-mnist"
    empty.mkdir()
    app_settings = settings.model_copy(update={"mnist_dir": empty, "mnist_download": True})
    with TestClient(create_app(app_settings)) as client:
        for path in ("/dataset/samples", "/dataset/test/0"):
            response = client.get(path)
            assert response.status_code == 503
            assert "MNIST" in response.json()["detail"]
            assert str(empty) not in response.text  # the server's layout stays in its log
    assert list(empty.iterdir()) == []


def test_openapi_documents_the_dataset_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    samples = paths["/dataset/samples"]["get"]
    assert "503" in samples["responses"]
    assert samples["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DatasetSamples"
    }
    assert "/dataset/test/{index}" in paths


def test_older_models_without_evaluation_still_load(client: TestClient, trained: object) -> None:
    body = client.get(f"/models/{trained}").json()
    assert body["confusion"] is None and body["errors"] == []
