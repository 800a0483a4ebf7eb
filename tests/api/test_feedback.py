"""``/feedback`` and ``POST /jobs`` with ``init_model``, in-process over a real Redis."""

import io
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api import imaging
from api.main import create_app
from shared.config import Settings
from shared.data.mnist import Mnist
from shared.registry.aliases import Aliases
from shared.registry.store import ModelRegistry
from tests.digits import dark_on_light_png

KEY = "s3cret-key"


def configured(settings: Settings, **changes: object) -> Settings:
    return Settings.model_validate({**settings.model_dump(), **changes})


@pytest.fixture
def small(settings: Settings) -> Iterator[TestClient]:
    """At most 3 corrections."""
    with TestClient(create_app(configured(settings, feedback_max=3))) as client:
        yield client


def pixels(data: Mnist, index: int) -> list[int]:
    return np.asarray(data.test_images[index]).tolist()


def test_json_round_trip(client: TestClient, mnist_data: Mnist, settings: Settings) -> None:
    model_id = str(uuid.uuid4())
    body = {"pixels": pixels(mnist_data, 0), "label": 7, "model_id": model_id, "predicted": 1}
    created = client.post("/feedback", json=body)
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["label"] == 7 and item["predicted"] == 1 and item["model_id"] == model_id
    assert item["source"] == "pixels" and item["created_at"]
    assert created.headers["location"] == f"/feedback/{item['id']}"
    assert (settings.model_dir / "feedback" / f"{item['id']}.json").exists()  # the default

    detail = client.get(f"/feedback/{item['id']}").json()
    assert np.array_equal(np.array(detail["pixels"]).reshape(-1), body["pixels"])
    assert {k: detail[k] for k in item} == item

    again = client.post("/feedback", json={**body, "predicted": 2})
    assert again.status_code == 200 and again.json() == item  # the first one, unchanged
    nested = {"pixels": np.reshape(body["pixels"], (28, 28)).tolist(), "label": 7}
    assert client.post("/feedback", json=nested).json()["id"] == item["id"]
    relabelled = client.post("/feedback", json={**body, "label": 1})
    assert relabelled.status_code == 201 and relabelled.json()["id"] != item["id"]

    png = client.get(f"/feedback/{item['id']}.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(png.content)))
    assert image.shape == (28, 28) and np.array_equal(image.reshape(-1), body["pixels"])


def test_a_picture_is_kept_as_the_model_sees_it(client: TestClient, mnist_data: Mnist) -> None:
    png = dark_on_light_png(mnist_data.test_images[0], 4.0, (200, 150), (30, 20))
    created = client.post(
        "/feedback", files={"file": ("d.png", png, "image/png")}, data={"label": "7"}
    )
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["source"] == "image" and item["predicted"] is None
    stored = np.array(client.get(f"/feedback/{item['id']}").json()["pixels"], dtype=np.uint8)
    assert np.array_equal(stored, imaging.image_to_mnist(png))
    again = client.post(
        "/feedback",
        files={"file": ("d.png", png, "image/png")},
        data={"label": "7", "predicted": "1", "model_id": str(uuid.uuid4())},
    )
    assert again.status_code == 200 and again.json()["id"] == item["id"]


@pytest.mark.parametrize(
    "body, where",
    [
        ({"pixels": [0] * 784, "label": 10}, ["body", "label"]),
        ({"pixels": [0] * 784, "label": -1}, ["body", "label"]),
        ({"pixels": [0] * 784, "label": "3"}, ["body", "label"]),
        ({"pixels": [0] * 784, "label": True}, ["body", "label"]),
        ({"pixels": [0] * 784}, ["body", "label"]),
        ({"pixels": [0] * 783, "label": 3}, ["body", "pixels"]),
        ({"pixels": [256] + [0] * 783, "label": 3}, ["body", "pixels", 0]),
        ({"pixels": [0] * 784, "label": 3, "predicted": 11}, ["body", "predicted"]),
        ({"pixels": [0] * 784, "label": 3, "model_id": "../x"}, ["body", "model_id"]),
        ({"pixels": [0] * 784, "label": 3, "extra": 1}, ["body", "extra"]),
    ],
)
def test_bad_json_is_a_422_naming_the_field(
    client: TestClient, body: dict[str, object], where: list[object]
) -> None:
    response = client.post("/feedback", json=body)
    assert response.status_code == 422, response.text
    assert where in [error["loc"] for error in response.json()["detail"]]


def test_bad_pictures_and_forms(client: TestClient, mnist_data: Mnist) -> None:
    png = dark_on_light_png(mnist_data.test_images[0], 2.0, (80, 80), (10, 10))
    cases = [
        ({"file": ("x.txt", b"not an image", "text/plain")}, {"label": "3"}, 415),
        ({"file": ("e.png", b"", "image/png")}, {"label": "3"}, 422),
        ({"file": ("d.png", png, "image/png")}, {"label": "12"}, 422),
        ({"file": ("d.png", png, "image/png")}, {}, 422),
        ({"file": ("d.png", png, "image/png")}, {"label": "x"}, 422),
        # digits int() takes but a label is not: superscripts, 5,000 digits (a 500 before)
        ({"file": ("d.png", png, "image/png")}, {"label": "²"}, 422),
        ({"file": ("d.png", png, "image/png")}, {"label": "³"}, 422),
        ({"file": ("d.png", png, "image/png")}, {"label": "7" * 5000}, 422),
        ({"file": ("d.png", png, "image/png")}, {"label": "3", "predicted": "٣"}, 422),
        ({}, {"label": "3"}, 422),
    ]
    blank = io.BytesIO()
    Image.new("L", (50, 50), 255).save(blank, "PNG")
    cases.append(({"file": ("b.png", blank.getvalue(), "image/png")}, {"label": "3"}, 422))
    for files, data, status in cases:
        if not files:  # a multipart body without the file
            response = client.post("/feedback", data=data, files={"other": ("o", b"x")})
        else:
            response = client.post("/feedback", files=files, data=data)
        assert response.status_code == status, (data, response.text)
        assert response.json()["detail"]
    assert client.get("/feedback").json()["total"] == 0


def test_list_filter_stats_and_delete(client: TestClient, mnist_data: Mnist) -> None:
    ids = []
    for index, (label, predicted) in enumerate([(3, 8), (3, 8), (5, None), (3, 5)]):
        body = {"pixels": pixels(mnist_data, index), "label": label}
        if predicted is not None:
            body["predicted"] = predicted
        ids.append(client.post("/feedback", json=body).json()["id"])
    page = client.get("/feedback", params={"limit": 2}).json()
    assert page["total"] == 4 and [i["id"] for i in page["items"]] == ids[::-1][:2]
    threes = client.get("/feedback", params={"label": 3}).json()
    assert threes["total"] == 3 and {i["label"] for i in threes["items"]} == {3}
    assert client.get("/feedback", params={"label": 10}).status_code == 422

    stats = client.get("/feedback/stats").json()
    assert stats["total"] == 4 and stats["by_label"]["3"] == 3 and stats["by_label"]["5"] == 1
    assert stats["by_prediction"][0] == {"predicted": 8, "label": 3, "count": 2}
    assert {"predicted": None, "label": 5, "count": 1} in stats["by_prediction"]

    assert client.delete(f"/feedback/{ids[0]}").status_code == 204
    assert client.get(f"/feedback/{ids[0]}").status_code == 404
    assert client.get(f"/feedback/{ids[0]}.png").status_code == 404
    assert client.delete(f"/feedback/{ids[0]}").status_code == 404
    assert client.get("/feedback/stats").json()["by_prediction"][0]["count"] == 1
    assert client.get("/feedback/not-an-id").status_code == 422
    assert client.get(f"/feedback/{uuid.uuid4()}").status_code == 404


def test_feedback_max_gives_507(small: TestClient, mnist_data: Mnist) -> None:
    for index in range(3):
        body = {"pixels": pixels(mnist_data, index), "label": 1}
        assert small.post("/feedback", json=body).status_code == 201
    full = small.post("/feedback", json={"pixels": pixels(mnist_data, 9), "label": 1})
    assert full.status_code == 507 and "FEEDBACK_MAX" in full.json()["detail"]
    known = small.post("/feedback", json={"pixels": pixels(mnist_data, 0), "label": 1})
    assert known.status_code == 200  # what is stored already is still found
    first = small.get("/feedback").json()["items"][0]["id"]
    assert small.delete(f"/feedback/{first}").status_code == 204
    again = small.post("/feedback", json={"pixels": pixels(mnist_data, 9), "label": 1})
    assert again.status_code == 201


def test_keys(settings: Settings, mnist_data: Mnist) -> None:
    body = {"pixels": pixels(mnist_data, 0), "label": 7}
    keyed = configured(settings, api_key=KEY)
    with TestClient(create_app(keyed)) as client:
        # a correction is a write: what the next fine-tune trains on
        assert client.post("/feedback", json=body).status_code == 401
        item = client.post("/feedback", json=body, headers={"X-API-Key": KEY})
        assert item.status_code == 201
        assert client.get(f"/feedback/{item.json()['id']}").status_code == 200  # reads: open
        assert client.delete(f"/feedback/{item.json()['id']}").status_code == 401
        deleted = client.delete(f"/feedback/{item.json()['id']}", headers={"X-API-Key": KEY})
        assert deleted.status_code == 204
    locked = configured(settings, api_key=KEY, protect_predict=True)
    with TestClient(create_app(locked)) as client:
        assert client.post("/feedback", json=body).status_code == 401
        ok = client.post("/feedback", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 201
        drawing = f"/feedback/{ok.json()['id']}"
        for path in (drawing, f"{drawing}.png", "/feedback", "/feedback/stats"):
            assert client.get(path).status_code == 401, path  # users' drawings are theirs
            assert client.get(path, headers={"X-API-Key": KEY}).status_code == 200, path


def test_init_model_inherits_and_refuses_conflicts(
    client: TestClient, trained: uuid.UUID, registry: ModelRegistry, aliases: Aliases
) -> None:
    # the trained fixture: n_hidden 50, input_scaling unit, float32
    parent = registry.get_model(trained)
    assert parent is not None
    conflict = client.post("/jobs", json={"init_model": str(trained), "n_hidden": 99})
    assert conflict.status_code == 422
    error = conflict.json()["detail"][0]
    assert error["loc"] == ["body", "n_hidden"] and "init model" in error["msg"]
    scaling = client.post("/jobs", json={"init_model": str(trained), "input_scaling": "none"})
    assert scaling.json()["detail"][0]["loc"] == ["body", "input_scaling"]
    for ref in (str(uuid.uuid4()), "nosuchalias", "Not An Alias!"):
        unknown = client.post("/jobs", json={"init_model": ref})
        assert unknown.status_code == 422
        assert unknown.json()["detail"][0]["loc"] == ["body", "init_model"]
    assert client.post("/jobs", json={"feedback_weight": -1}).status_code == 422
    assert client.post("/jobs", json={"feedback_holdout": 0.6}).status_code == 422

    aliases.set_alias("production", trained)
    accepted = client.post(
        "/jobs?preset=fast",
        json={"init_model": "production", "epochs": 2, "feedback_weight": 5},
    )
    assert accepted.status_code == 202, accepted.text
    job = client.get(f"/jobs/{accepted.json()['id']}").json()
    assert job["init_model"] == "production" and job["init_model_id"] == str(trained)
    assert job["feedback_weight"] == 5 and job["feedback_holdout"] == 0.2
    # the parent's architecture over the preset's, the preset's training settings kept
    assert job["params"]["n_hidden"] == parent.params.n_hidden
    assert job["params"]["input_scaling"] == parent.params.input_scaling.value
    assert job["params"]["minibatches"] == 600 and job["params"]["epochs"] == 2
    assert client.get(f"/jobs/{job['id']}/feedback").status_code == 404  # frozen at start
