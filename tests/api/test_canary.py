"""Canary and shadow splits through the HTTP API, in-process over a real Redis: the
contract's answers and refusals, the side every answer names, corrections linked to
the side that answered, metrics, and a full shadow queue forced with the queue's hold
(docs/lifecycle.md "Canary and shadow"). Across real processes: tests/e2e/test_canary.py.
"""

import io
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from api.serving import ModelCache, predict
from shared.config import Settings
from shared.data.mnist import Mnist
from shared.registry.canary import lands_on_canary
from shared.services import Services
from tests.models import register, train
from tests.procs import wait_until

QUEUE = 20
SENT = 30


@pytest.fixture
def small_queue(settings: Settings) -> Iterator[TestClient]:
    """A shadow queue of twenty images."""
    with TestClient(create_app(settings.model_copy(update={"shadow_queue_images": QUEUE}))) as c:
        yield c


def offline(services: Services, model_id: uuid.UUID, images: np.ndarray) -> np.ndarray:
    """The model's probabilities computed here, as the API computes them."""
    info = services.registry.get_model(model_id)
    assert info is not None
    return predict(ModelCache(services.models, 1).get(info), images.astype(np.float32))


def client_on(split_id: str, percent: int, canary: bool) -> str:
    """A client id that lands on the chosen side of the split."""
    for i in range(10_000):
        client = f"client-{i}"
        if lands_on_canary(split_id, client, percent) == canary:
            return client
    raise AssertionError("no such client")


def metric(client: TestClient, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def stats(client: TestClient, alias: str = "production") -> dict:
    answer = client.get(f"/aliases/{alias}/canary")
    assert answer.status_code == 200, answer.text
    return answer.json()["stats"]


def test_the_contract_refusals(client: TestClient, services: Services, settings: Settings) -> None:
    a, b, broken = (register(services.models, seed=s) for s in range(3))
    put = "/aliases/production/canary"
    assert client.get(put).status_code == 404  # no alias
    assert client.put(put, json={"model_id": str(b), "percent": 10}).status_code == 404
    assert client.put("/aliases/production", json={"model_id": str(a)}).status_code == 200
    assert client.get(put).status_code == 404  # no split
    unknown = client.put(put, json={"model_id": str(uuid.uuid4()), "percent": 10})
    assert unknown.status_code == 404 and "not found" in unknown.json()["detail"]
    own = client.put(put, json={"model_id": str(a), "percent": 10})
    assert own.status_code == 409 and "own target" in own.json()["detail"]
    path = settings.model_dir / f"{broken}.npz"
    path.write_bytes(path.read_bytes()[:-8] + bytes(8))
    refused = client.put(put, json={"model_id": str(broken), "percent": 10})
    assert refused.status_code == 409 and "broken" in refused.json()["detail"]
    for body in (
        {"percent": 0},
        {"percent": 100},
        {},
        {"mode": "shadow", "percent": 10},
        {"percent": 10.5},
    ):
        answer = client.put(put, json={"model_id": str(b), **body})
        assert answer.status_code == 422, (body, answer.text)
    assert client.delete(put).status_code == 404
    assert client.post(f"{put}/promote").status_code == 404
    assert client.put("/aliases/Bad/canary", json={"model_id": str(b)}).status_code == 422
    started = client.put(put, json={"model_id": str(b), "percent": 10, "mode": "canary"})
    assert started.status_code == 200, started.text
    split = started.json()
    assert (split["model_id"], split["primary_model_id"]) == (str(b), str(a))
    assert (split["alias"], split["mode"], split["percent"]) == ("production", "canary", 10)
    assert split["stats"]["primary"]["requests"] == split["stats"]["canary"]["requests"] == 0
    assert client.get(put).json()["id"] == split["id"]
    gone = client.delete(f"/models/{b}")  # the candidate is not deleted under its split
    assert gone.status_code == 409 and "candidate" in gone.json()["detail"]


def test_answers_name_their_side_and_corrections_count_for_it(
    client: TestClient, services: Services, mnist_data: Mnist
) -> None:
    a, b = register(services.models, seed=1), register(services.models, seed=2)
    client.put("/aliases/production", json={"model_id": str(a)})
    split = client.put(
        "/aliases/production/canary", json={"model_id": str(b), "percent": 50}
    ).json()
    to_canary, to_primary = client_on(split["id"], 50, True), client_on(split["id"], 50, False)
    images = np.asarray(mnist_data.test_images[:8])
    sent = {"primary": [], "canary": []}
    for i, pixels in enumerate(images):
        who = to_canary if i % 2 else to_primary
        answer = client.post(
            "/predict", json={"pixels": pixels.tolist()}, headers={"X-Client-Id": who}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        expected = ("canary", str(b)) if i % 2 else ("primary", str(a))
        assert (body["variant"], body["model_id"], body["alias"]) == (*expected, "production")
        sent[body["variant"]].append((i, body["label"]))
    # a correction names the model that answered and what it said; the label is what the
    # user says: they confirm 3 of the primary's 4 answers and 1 of the candidate's 4
    confirmed = {"primary": 3, "canary": 1}
    for variant, answers in sent.items():
        model_id = b if variant == "canary" else a
        for j, (i, predicted) in enumerate(answers):
            feedback = {
                "pixels": images[i].tolist(),
                "label": predicted if j < confirmed[variant] else (predicted + 1) % 10,
                "model_id": str(model_id),
                "predicted": predicted,
            }
            assert client.post("/feedback", json=feedback).status_code == 201
    unlinked = {"pixels": images[0].tolist(), "label": 3, "model_id": str(uuid.uuid4())}
    assert client.post("/feedback", json={**unlinked, "predicted": 3}).status_code == 201
    counted = stats(client)
    for variant, answers in sent.items():
        side = counted[variant]
        assert (side["requests"], side["images"]) == (len(answers), len(answers)) == (4, 4)
        assert (side["corrections"], side["correct"]) == (4, confirmed[variant])
        assert side["accuracy"] == confirmed[variant] / 4
    batch = client.post(
        "/predict", json={"images": images[:3].tolist()}, headers={"X-Client-Id": to_canary}
    ).json()
    assert batch["variant"] == "canary" and batch["model_id"] == str(b)
    picture = client.post(
        "/predict/image",
        files={"file": ("d.png", _png(images[0]), "image/png")},
        headers={"X-Client-Id": to_canary},
    ).json()
    assert picture["variant"] == "canary" and picture["model_id"] == str(b)
    assert stats(client)["canary"]["images"] == 4 + 3 + 1
    assert (
        metric(
            client,
            "mnist_predictions_total",
            endpoint="/predict",
            alias="production",
            variant="canary",
        )
        == 4 + 3
    )
    assert metric(
        client, "mnist_predictions_total", endpoint="/predict/image", alias="production",
        variant="canary",
    ) == 1  # fmt: skip


def test_an_explicit_model_id_is_never_split(client: TestClient, services: Services) -> None:
    a, b, c = (register(services.models, seed=s) for s in range(3))
    client.put("/aliases/production", json={"model_id": str(a)})
    split = client.put(
        "/aliases/production/canary", json={"model_id": str(b), "percent": 99}
    ).json()
    canary_client = {"X-Client-Id": client_on(split["id"], 99, True)}
    pixels = [0] * 784
    for model_id in (a, c, b):
        body = {"pixels": pixels, "model_id": str(model_id)}
        answer = client.post("/predict", json=body, headers=canary_client).json()
        assert (answer["model_id"], answer["variant"], answer["alias"]) == (
            str(model_id), "primary", None,
        )  # fmt: skip
    by_alias = client.post(
        "/predict", json={"pixels": pixels, "alias": "production"}, headers=canary_client
    ).json()
    assert (by_alias["model_id"], by_alias["variant"]) == (str(b), "canary")
    assert stats(client)["canary"]["requests"] == 1 and stats(client)["primary"]["requests"] == 0


def test_a_full_shadow_queue_drops_and_counts_and_the_primary_answers_every_request(
    small_queue: TestClient, services: Services, mnist_data: Mnist
) -> None:
    client = small_queue
    a, b = train(services.models, mnist_data, 3), train(services.models, mnist_data, 4)
    client.put("/aliases/production", json={"model_id": str(a)})
    started = client.put("/aliases/production/canary", json={"model_id": str(b), "mode": "shadow"})
    assert started.status_code == 200 and started.json()["percent"] is None
    traffic = client.app.state.traffic  # type: ignore[attr-defined]
    traffic.queue.hold()  # the shadow thread takes nothing until released
    images = np.asarray(mnist_data.test_images[:SENT])
    primary = offline(services, a, images)
    for i, pixels in enumerate(images):
        answer = client.post("/predict", json={"pixels": pixels.tolist()})
        assert answer.status_code == 200
        body = answer.json()
        assert (body["model_id"], body["variant"]) == (str(a), "primary")
        assert body["label"] == int(primary[i].argmax())
    held = stats(client)
    assert held["primary"]["requests"] == SENT and held["canary"]["requests"] == 0
    assert (held["shadow"]["compared"], held["shadow"]["dropped"]) == (0, SENT - QUEUE)
    assert metric(client, "mnist_shadow_dropped_total") == SENT - QUEUE
    traffic.queue.release()
    wait_until(lambda: stats(client)["shadow"]["compared"] == QUEUE, 10, "the queued images")
    shadow = stats(client)["shadow"]
    candidate = offline(services, b, images[:QUEUE])
    agreed = int((primary[:QUEUE].argmax(1) == candidate.argmax(1)).sum())
    assert 0 < agreed < QUEUE  # the two models differ on some of these images
    assert (shadow["agreed"], shadow["dropped"]) == (agreed, SENT - QUEUE)
    assert shadow["agreement"] == agreed / QUEUE
    for side, probabilities in (("primary", primary[:QUEUE]), ("canary", candidate)):
        top = stats(client)[side]["mean_top_probability"]
        assert top == pytest.approx(float(probabilities.max(axis=1).mean()), rel=1e-6)
    assert metric(client, "mnist_shadow_agreement_ratio", alias="production") == pytest.approx(
        agreed / QUEUE
    )
    big = client.post("/predict", json={"images": images[: QUEUE + 1].tolist()})
    assert big.status_code == 200  # a batch above the whole queue is dropped at once
    assert stats(client)["shadow"]["dropped"] == SENT - QUEUE + QUEUE + 1


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8).reshape(28, 28)).save(buffer, "PNG")
    return buffer.getvalue()
