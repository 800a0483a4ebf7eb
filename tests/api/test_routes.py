"""Every route's contract and error paths, in-process over real Redis."""

import json
import uuid

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from shared.artifacts.local import LocalStore
from shared.config import Settings
from shared.data.mnist import Mnist
from shared.files import sha256_bytes, write_bytes_atomic
from shared.jobs.store import JobStore
from shared.redisdb.keys import Keys
from shared.registry.files import ModelFiles
from shared.registry.index import ModelIndex
from shared.registry.service import model_info
from shared.registry.store import ModelRegistry
from shared.schemas.common import utcnow
from shared.schemas.jobs import Job, JobEnd, JobStatus
from shared.schemas.params import TrainParams
from tests import models
from tests.api.conftest import images
from tests.procs import wait_until


def test_submit_answers_202_with_location_and_a_queued_record(client: TestClient) -> None:
    response = client.post("/jobs", json={"epochs": 20})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert response.headers["location"] == f"/jobs/{body['id']}"
    job = client.get(response.headers["location"]).json()
    assert job["params"]["epochs"] == 20 and job["params"]["n_hidden"] == 50
    assert (job["epoch"], job["epochs"], job["history"]) == (0, 20, [])


@pytest.mark.parametrize("kwargs", [{"json": {}}, {}])
def test_every_parameter_is_optional(client: TestClient, kwargs: dict) -> None:
    response = client.post("/jobs", **kwargs)
    assert response.status_code == 202
    job = client.get(f"/jobs/{response.json()['id']}").json()
    assert job["epochs"] == 1000


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"epochs": -5}, "epochs"),
        ({"epochs": 10**9}, "epochs"),
        ({"n_hidden": 10**9}, "n_hidden"),
        ({"minibatches": 0}, "minibatches"),
        ({"eta": "fast"}, "eta"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_parameters_get_422_naming_the_field(
    client: TestClient, jobs: JobStore, body: dict, field: str
) -> None:
    response = client.post("/jobs", json=body)
    assert response.status_code == 422
    assert field in [part for error in response.json()["detail"] for part in error["loc"]]
    assert jobs.list_jobs(0, 10)[1] == 0  # nothing was queued


def test_unknown_and_malformed_ids(client: TestClient) -> None:
    assert client.get(f"/jobs/{uuid.uuid4()}").status_code == 404
    assert client.get(f"/jobs/{uuid.uuid4()}").json()["detail"].endswith("not found")
    assert client.post(f"/jobs/{uuid.uuid4()}/cancel").status_code == 404
    assert client.get(f"/models/{uuid.uuid4()}").status_code == 404
    for bad in ["abc", "..%2f..%2fetc%2fpasswd", "%2e%2e%2f", "x" * 5000, "a%00b"]:
        for path in (f"/jobs/{bad}", f"/models/{bad}"):
            # "/jobs/%2e%2e%2f" is "/jobs/../": Starlette redirects it (307) to "/jobs/..",
            # which a client resolves to "/", the web page; so redirects are not followed
            response = client.get(path, follow_redirects=False)
            assert response.status_code in (307, 404, 422), path
            if response.status_code == 307:
                assert not response.content, path


def test_jobs_are_listed_newest_first_with_pages(client: TestClient) -> None:
    ids = [client.post("/jobs", json={"epochs": 1}).json()["id"] for _ in range(3)]
    page = client.get("/jobs", params={"limit": 2}).json()
    assert page["total"] == 3 and [j["id"] for j in page["items"]] == ids[::-1][:2]
    rest = client.get("/jobs", params={"offset": 2, "limit": 2}).json()
    assert [j["id"] for j in rest["items"]] == ids[:1]
    assert client.get("/jobs", params={"limit": 0}).status_code == 422


def test_cancel_queued_job_then_409(client: TestClient) -> None:
    job_id = client.post("/jobs", json={"epochs": 1}).json()["id"]
    response = client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    again = client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_predict_without_any_model_is_a_clear_503(client: TestClient) -> None:
    response = client.post("/predict", json={"pixels": [0] * 784})
    assert response.status_code == 503
    assert "no trained model" in response.json()["detail"]


def test_predict_one_batch_and_nested(
    client: TestClient, trained: uuid.UUID, mnist_data: Mnist
) -> None:
    batch = images(mnist_data, 200)
    one = client.post("/predict", json={"pixels": batch[0]}).json()
    assert one["model_id"] == str(trained) and len(one["probabilities"]) == 10
    assert one["alias"] is None  # served as the newest model, not through an alias
    assert one["label"] == int(mnist_data.test_labels[0])
    assert sum(one["probabilities"]) == pytest.approx(1.0)
    nested = [batch[0][r * 28 : (r + 1) * 28] for r in range(28)]
    assert client.post("/predict", json={"pixels": nested}).json()["label"] == one["label"]
    many = client.post("/predict", json={"images": batch, "model_id": str(trained)}).json()
    correct = sum(p == t for p, t in zip(many["labels"], mnist_data.test_labels[:200], strict=True))
    assert correct / 200 > 0.85
    assert len(many["probabilities"]) == 200 and many["alias"] is None


@pytest.mark.parametrize(
    "raw",
    [
        '{"pixels": [NaN' + ", 0" * 783 + "]}",
        '{"pixels": [Infinity' + ", 0" * 783 + "]}",
        '{"pixels": [1e309' + ", 0" * 783 + "]}",
        '{"pixels": [0' + ", 0" * 782 + "]}",
        '{"pixels": [0' + ", 0" * 784 + "]}",
        '{"pixels": ["a"' + ", 0" * 783 + "]}",
        '{"pixels": [null' + ", 0" * 783 + "]}",
        '{"pixels": [300' + ", 0" * 783 + "]}",
        '{"pixels": [[[0]]]}',
        '{"images": [[0]]}',
        '{"pixels": "0"}',
        "not json",
    ],
)
def test_bad_pixels_get_422_not_500(client: TestClient, trained: uuid.UUID, raw: str) -> None:
    response = client.post("/predict", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"]


def test_batch_above_maximum_is_rejected(client: TestClient, trained: uuid.UUID) -> None:
    response = client.post("/predict", json={"images": [[0] * 784] * 1001})
    assert response.status_code == 422


def test_predict_with_unknown_model_id(client: TestClient, trained: uuid.UUID) -> None:
    response = client.post("/predict", json={"pixels": [0] * 784, "model_id": str(uuid.uuid4())})
    assert response.status_code == 404
    bad = client.post("/predict", json={"pixels": [0] * 784, "model_id": "../../etc/passwd"})
    assert bad.status_code == 422


def test_a_model_in_memory_serves_without_its_registry_entry(
    client: TestClient, trained: uuid.UUID, raw_redis: redis.Redis, keys: Keys
) -> None:
    """Models never change once registered, so a loaded one needs no Redis read by id."""
    body = {"pixels": [0] * 784, "model_id": str(trained)}
    first = client.post("/predict", json=body).json()
    raw_redis.delete(keys.model(trained))  # as if Redis lost it
    again = client.post("/predict", json=body)
    assert again.status_code == 200 and again.json() == first


def test_a_new_model_serves_as_soon_as_it_is_registered(
    client: TestClient,
    trained: uuid.UUID,
    settings: Settings,
    registry: ModelRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API keeps the newest id from the registry's announcements: no periodic
    re-read may hide a missing one, so it is pushed far out here."""
    monkeypatch.setattr(ModelIndex, "REFRESH_SECONDS", 600.0)
    store = ModelFiles(LocalStore(settings.model_dir))
    model = store.load(trained)
    wait_until(lambda: client.app.state.model_index._current, 10, "API subscribed")
    for _ in range(10):
        new_id = uuid.uuid4()
        meta = model.meta.model_copy(update={"created_at": utcnow()})
        store.save(new_id, model.weights, meta)
        registry.put_model(model_info(store.load(new_id)))  # as the worker does
        # the client learns of it from the API (the job's status, here the model itself)
        assert client.get(f"/models/{new_id}").status_code == 200
        assert client.post("/predict", json={"pixels": [0] * 784}).json()["model_id"] == str(new_id)


def test_the_newest_model_costs_no_redis_read_per_request(
    settings: Settings,
    trained: uuid.UUID,
    raw_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While subscribed, the index answers from its snapshot: what it reads to build one
    (the ids, the aliases, the models' entries) is never read per request. The periodic
    re-read is pushed far out, so any read counted here would be a request's."""
    monkeypatch.setattr(ModelIndex, "REFRESH_SECONDS", 600.0)
    reads = ("zrevrange", "hgetall", "get", "mget")

    def read_calls() -> dict[str, int]:
        stats = raw_redis.info("commandstats")
        return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in reads}

    with TestClient(create_app(settings)) as client:
        index = client.app.state.model_index
        wait_until(lambda: index._current and trained in index._snapshot.ids, 10, "snapshot")
        first = client.post("/predict", json={"pixels": [0] * 784})  # loads the model once
        assert first.status_code == 200 and first.json()["model_id"] == str(trained)
        before = read_calls()
        assert before["zrevrange"] > 0  # the snapshot's read: the counter is the right one
        for _ in range(20):
            assert client.post("/predict", json={"pixels": [0] * 784}).status_code == 200
        assert read_calls() == before


def test_models_listed_and_described(client: TestClient, trained: uuid.UUID) -> None:
    """The list has summaries: the card without its confusion matrix and errors."""
    page = client.get("/models").json()
    assert page["total"] == 1
    model = client.get(f"/models/{trained}").json()
    assert "confusion" in model and "errors" in model
    (summary,) = page["items"]
    assert "confusion" not in summary and "errors" not in summary
    assert {k: model[k] for k in summary} == summary  # the card's own values
    assert summary["aliases"] == []
    assert len(model["sha256"]) == 64 and model["size_bytes"] > 0
    assert model["params"]["n_hidden"] == 50 and model["job_id"] == str(trained)


def test_corrupted_model_is_refused_others_keep_serving(
    client: TestClient, trained: uuid.UUID, settings: Settings
) -> None:
    path = settings.model_dir / f"{trained}.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    response = client.post("/predict", json={"pixels": [0] * 784})
    assert response.status_code == 503
    assert "integrity check failed" in response.json()["detail"]
    # marked broken: the default passes it over, and says there is no intact model
    # (not "no trained model yet")
    again = client.post("/predict", json={"pixels": [0] * 784})
    assert again.status_code == 503
    assert again.json()["detail"].startswith("no intact model to serve by default")
    explicit = client.post("/predict", json={"pixels": [0] * 784, "model_id": str(trained)})
    assert explicit.status_code == 503
    assert explicit.json()["detail"] == f"model {trained}: integrity check failed"
    ready = client.get("/readyz").json()
    assert "integrity check failed" in ready["refused_models"][str(trained)]
    assert ready["status"] == "degraded"
    assert ready["serving"] == {"model_id": None, "alias": None, "fallback": True}


def test_health(client: TestClient) -> None:
    assert client.get("/livez").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert ready.json()["serving"] == {"model_id": None, "alias": None, "fallback": False}


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/cancel",
        "/predict",
        "/models",
        "/models/{model_id}",
        "/livez",
        "/readyz",
    ):
        assert path in paths
    schemas = spec["components"]["schemas"]
    predict_body = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert schemas["TrainParams"]["examples"] and predict_body["schema"]["examples"]
    assert "422" in paths["/predict"]["post"]["responses"]
    assert schemas["TrainParams"]["properties"]["epochs"]["maximum"] == 5000


def test_job_status_values(jobs: JobStore, client: TestClient) -> None:
    job_id = uuid.UUID(client.post("/jobs", json={"epochs": 1}).json()["id"])
    jobs.finish(job_id, JobStatus.failed, JobEnd(error="boom"))
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["error"] == "boom"


def test_fast_preset_with_overrides(client: TestClient) -> None:
    job_id = client.post("/jobs?preset=fast", json={"epochs": 12}).json()["id"]
    params = client.get(f"/jobs/{job_id}").json()["params"]
    assert params["n_hidden"] == 100 and params["input_scaling"] == "unit"
    assert params["lr_schedule"] == "inverse" and params["epochs"] == 12
    book = client.post("/jobs?preset=book").json()["id"]
    assert client.get(f"/jobs/{book}").json()["params"]["n_hidden"] == 50
    assert client.post("/jobs?preset=turbo").status_code == 422
    clash = client.post("/jobs?preset=fast", json={"train_size": 100})  # 600 mini-batches
    assert clash.status_code == 422 and "minibatches" in clash.text


def test_a_planted_file_that_is_not_a_model_never_stops_the_api(settings: Settings) -> None:
    """Metadata that fails validation (a string where input_scale is a number), NaN,
    weights of the wrong shape or dtype: skipped at start, with a valid .sha256 even."""
    store = ModelFiles(LocalStore(settings.model_dir))
    good = uuid.uuid4()
    store.save(good, models.weights(), models.meta(good))
    w = dict(zip(("w1", "b1", "w2", "b2"), models.weights().arrays(), strict=True))
    meta = json.loads(models.meta().model_dump_json())
    planted = [
        (w, {**meta, "input_scale": "big"}),
        (w, {**meta, "test_accuracy": float("nan")}),
        ({**w, "w1": w["w1"].astype(np.complex64)}, meta),
        ({**w, "w2": np.zeros((9, 5), np.float32)}, meta),
    ]
    for arrays, planted_meta in planted:
        payload = models.npz(arrays, json.dumps(planted_meta))
        bad = uuid.uuid4()
        write_bytes_atomic(settings.model_dir / f"{bad}.npz", payload)
        checksum = f"{sha256_bytes(payload)}\n".encode()
        write_bytes_atomic(settings.model_dir / f"{bad}.sha256", checksum)
    with TestClient(create_app(settings)) as client:
        assert client.get("/livez").status_code == 200
        listed = client.get("/models").json()
        assert [m["id"] for m in listed["items"]] == [str(good)]
        answer = client.post("/predict", json={"pixels": [0] * 784})
        assert answer.status_code == 200 and answer.json()["model_id"] == str(good)


def test_a_model_an_active_job_starts_from_is_not_deleted(
    client: TestClient, trained: uuid.UUID, jobs: JobStore
) -> None:
    child = Job(id=uuid.uuid4(), params=TrainParams(epochs=1), epochs=1, init_model_id=trained)
    jobs.create(child, 100)
    refused = client.delete(f"/models/{trained}")
    assert refused.status_code == 409 and str(child.id) in refused.json()["detail"]
    jobs.finish(child.id, JobStatus.cancelled)
    assert client.delete(f"/models/{trained}").status_code == 204
