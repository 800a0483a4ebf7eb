"""The model lifecycle across real processes: aliases followed by two API processes at
once, the promotion gate, deletion, download, ONNX export, import into a second instance,
and default serving that falls back past a broken model."""

import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime
import pytest

from shared.data.mnist import Mnist
from tests.e2e.conftest import Stack, running_stack
from tests.procs import free_port, redis_server, service_env, start_api, stop

pytestmark = pytest.mark.e2e

SMALL = {"epochs": 2, "train_size": 2000, "minibatches": 20, "input_scaling": "unit", "eta": 0.1}


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, httpx.Client]]:
    """One Redis, one worker, two API processes."""
    root = tmp_path_factory.mktemp("lifecycle")
    with running_stack(root) as stack:
        port = free_port()
        second = start_api(stack.env, root / "api2.log", port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                yield stack, http
        finally:
            stop(second)


def _train(stack: Stack, **extra: object) -> dict:
    job = stack.wait(stack.submit(**{**SMALL, **extra}))
    assert job["status"] == "succeeded", job
    return job


def _served(http: httpx.Client, pixels: list[int], **which: str) -> dict:
    response = http.post("/predict", json={"pixels": pixels, **which})
    assert response.status_code == 200, response.text
    return response.json()


def test_alias_changes_reach_every_api_process_on_the_next_request(
    lifecycle: tuple[Stack, httpx.Client], mnist_data: Mnist
) -> None:
    stack, other = lifecycle
    a, b = _train(stack)["model_id"], _train(stack, seed=2)["model_id"]
    pixels = np.asarray(mnist_data.test_images[0]).tolist()
    assert _served(other, pixels)["alias"] is None  # no alias yet: the newest model
    for target in (a, b, a, b, a):
        put = stack.http.put("/aliases/production", json={"model_id": target, "reason": "test"})
        assert put.status_code == 200, put.text
        for http in (other, stack.http):  # the very next request, in either process
            answer = _served(http, pixels)
            assert (answer["model_id"], answer["alias"]) == (target, "production")
    back = stack.http.post("/aliases/production/rollback")
    assert back.status_code == 200 and back.json()["model_id"] == b
    assert back.json()["history"][0]["source"] == "rollback"
    assert _served(other, pixels)["model_id"] == b
    assert _served(other, pixels, alias="production")["model_id"] == b
    assert _served(other, pixels, model_id=a) == {**_served(other, pixels, model_id=a)}
    listed = other.get("/aliases").json()["items"]
    assert [(i["name"], i["model_id"]) for i in listed] == [("production", b)]
    # errors named, never a 500
    assert other.post("/predict", json={"pixels": pixels, "alias": "nope"}).status_code == 404
    both = other.post("/predict", json={"pixels": pixels, "alias": "production", "model_id": a})
    assert both.status_code == 422
    assert stack.http.put("/aliases/Bad Name", json={"model_id": a}).status_code == 422
    unknown = stack.http.put("/aliases/x", json={"model_id": str(uuid.uuid4())})
    assert unknown.status_code == 404
    assert stack.http.get("/aliases/nope").status_code == 404


def test_delete_refused_while_aliased_then_gone_from_every_process(
    lifecycle: tuple[Stack, httpx.Client], mnist_data: Mnist
) -> None:
    stack, other = lifecycle
    doomed = _train(stack, seed=3)["model_id"]
    pixels = np.asarray(mnist_data.test_images[1]).tolist()
    _served(other, pixels, model_id=doomed)  # loaded into the other process's cache
    assert stack.http.put("/aliases/doomed", json={"model_id": doomed}).status_code == 200
    refused = stack.http.delete(f"/models/{doomed}")
    assert refused.status_code == 409 and "doomed" in refused.json()["detail"]
    assert stack.http.delete("/aliases/doomed").status_code == 204
    assert stack.http.delete(f"/models/{doomed}").status_code == 204
    for http in (stack.http, other):
        gone = http.post("/predict", json={"pixels": pixels, "model_id": doomed})
        assert gone.status_code == 404
        assert http.get(f"/models/{doomed}").status_code == 404
        assert doomed not in [m["id"] for m in http.get("/models").json()["items"]]
    assert not list(stack.model_dir.glob(f"{doomed}.*"))
    assert stack.http.delete(f"/models/{doomed}").status_code == 404


def test_promotion_gate_on_a_job(lifecycle: tuple[Stack, httpx.Client]) -> None:
    stack, _ = lifecycle
    first = _train(stack, promote={"alias": "gated", "min_gain": 0.0})
    assert first["promotion"]["promoted"] is True
    assert first["promotion"]["incumbent_accuracy"] is None
    worse = _train(stack, epochs=1, eta=0.0001, promote={"alias": "gated", "min_gain": 0.0})
    assert worse["promotion"]["promoted"] is False
    assert worse["promotion"]["incumbent_accuracy"] == first["test_accuracy"]
    alias = stack.http.get("/aliases/gated").json()
    assert alias["model_id"] == first["model_id"]
    assert [row["source"] for row in alias["history"]] == ["gate"]
    bad = stack.http.post("/jobs", json={**SMALL, "promote": {"alias": "Bad!"}})
    assert bad.status_code == 422


def test_download_onnx_and_import_into_another_instance(
    lifecycle: tuple[Stack, httpx.Client], mnist_data: Mnist, tmp_path: Path
) -> None:
    stack, _ = lifecycle
    model_id = _train(stack, seed=4)["model_id"]
    card = stack.http.get(f"/models/{model_id}").json()
    download = stack.http.get(f"/models/{model_id}/download")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == card["sha256"]
    assert download.headers["etag"] == card["sha256"]
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"] == f"attachment; filename={model_id}.npz"

    images = np.asarray(mnist_data.test_images[:1000], dtype=np.float32)
    expected = stack.http.post(
        "/predict", json={"images": images.astype(int).tolist(), "model_id": model_id}
    ).json()
    exported = stack.http.get(f"/models/{model_id}/onnx")
    assert exported.status_code == 200
    graph = onnx.load_model_from_string(exported.content)
    onnx.checker.check_model(graph)
    props = {p.key: p.value for p in graph.metadata_props}
    assert props["model_id"] == model_id and props["sha256"] == card["sha256"]
    session = onnxruntime.InferenceSession(exported.content)
    (probabilities,) = session.run(None, {session.get_inputs()[0].name: images})
    assert np.abs(probabilities - np.asarray(expected["probabilities"])).max() <= 1e-5

    with redis_server(tmp_path / "redis2") as redis_url:
        env = service_env(redis_url, tmp_path / "models2")
        port = free_port()
        api = start_api(env, tmp_path / "api2.log", port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as second:
                imported = second.post(
                    "/models",
                    content=download.content,
                    params={"source": stack.url},
                    headers={"Content-Type": "application/octet-stream"},
                )
                assert imported.status_code == 201, imported.text
                assert imported.json()["id"] == model_id
                assert imported.json()["sha256"] == card["sha256"]
                assert imported.json()["imported_from"] == stack.url
                again = second.post("/models", files={"file": ("m.npz", download.content)})
                assert again.status_code == 409
                batch = {"images": images[:50].astype(int).tolist()}
                there = second.post("/predict", json=batch).json()
                here = stack.http.post("/predict", json={**batch, "model_id": model_id}).json()
                assert there["model_id"] == model_id  # the only model there: the default
                assert there["probabilities"] == here["probabilities"]  # identical
                garbage = second.post("/models", content=b"not a model")
                assert (
                    garbage.status_code == 422 and "not a valid model" in garbage.json()["detail"]
                )
                assert (tmp_path / "models2" / f"{model_id}.npz").read_bytes() == download.content
        finally:
            stop(api)


def test_import_refuses_a_valid_zip_that_is_not_a_model(
    lifecycle: tuple[Stack, httpx.Client],
) -> None:
    stack, _ = lifecycle
    buffer = io.BytesIO()
    meta = {"input_scale": "big"}
    np.savez(buffer, meta=np.array(json.dumps(meta)), w1=np.zeros((5, 784), np.complex64))
    response = stack.http.post("/models", content=buffer.getvalue())
    assert response.status_code == 422 and "expected arrays" in response.json()["detail"]


def test_a_broken_newest_model_does_not_take_default_serving_down(
    tmp_path: Path, mnist_data: Mnist
) -> None:
    pixels = np.asarray(mnist_data.test_images[0]).tolist()
    with running_stack(tmp_path) as stack:
        older = _train(stack)["model_id"]
        newest = _train(stack, seed=5)["model_id"]
        path = stack.model_dir / f"{newest}.npz"
        payload = bytearray(path.read_bytes())
        payload[len(payload) // 2] ^= 0xFF
        path.write_bytes(bytes(payload))
        port = free_port()  # a fresh API process: nothing cached
        api = start_api(stack.env, tmp_path / "api-fresh.log", port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                answer = _served(http, pixels)
                assert answer["model_id"] == older and answer["alias"] is None
                explicit = http.post("/predict", json={"pixels": pixels, "model_id": newest})
                assert explicit.status_code == 503
                assert "integrity check failed" in explicit.json()["detail"]
                card = http.get(f"/models/{newest}").json()
                assert "integrity check failed" in card["broken"]
                ready = http.get("/readyz").json()
                assert ready["status"] == "degraded"
                assert ready["serving"]["model_id"] == older
                assert stack.http.get("/readyz").json()["status"] == "degraded"  # announced
                refused = http.put("/aliases/production", json={"model_id": newest})
                assert refused.status_code == 409
                # a missing file: dropped by the rebuild of a restarted API
                (stack.model_dir / f"{newest}.npz").unlink()
        finally:
            stop(api)
        api = start_api(stack.env, tmp_path / "api-again.log", port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                assert http.get(f"/models/{newest}").status_code == 404
                assert _served(http, pixels)["model_id"] == older
                assert http.get("/readyz").json()["status"] == "ok"
        finally:
            stop(api)


def test_retention_keeps_the_newest_and_the_aliased(tmp_path: Path) -> None:
    with running_stack(tmp_path, MODEL_RETENTION="2") as stack:
        first = _train(stack)["model_id"]
        assert stack.http.put("/aliases/production", json={"model_id": first}).status_code == 200
        later = [_train(stack, seed=seed)["model_id"] for seed in (2, 3, 4)]
        kept = {m["id"] for m in stack.http.get("/models").json()["items"]}
        assert kept == {first, *later[1:]}  # the 2 newest, and the aliased one
        assert not (stack.model_dir / f"{later[0]}.npz").exists()
        assert (stack.model_dir / f"{first}.npz").exists()
