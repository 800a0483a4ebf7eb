"""Access, limits and idempotency at the API's edge, over real Redis."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from shared.config import Settings
from shared.jobs.store import JobStore

KEY = "s3cret-key"


@pytest.fixture
def guarded(settings: Settings) -> Iterator[TestClient]:
    guarded = settings.model_copy(
        update={"api_key": KEY, "max_queued_jobs": 2, "max_body_bytes": 64 * 1024}
    )
    with TestClient(create_app(Settings.model_validate(guarded.model_dump()))) as client:
        yield client


def test_state_changes_need_the_key(guarded: TestClient, jobs: JobStore) -> None:
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
        response = guarded.post("/jobs", json={"epochs": 1}, headers=headers)
        assert response.status_code == 401 and response.json()["detail"]
    assert jobs.list_jobs(0, 10)[1] == 0
    ok = guarded.post("/jobs", json={"epochs": 1}, headers={"X-API-Key": KEY})
    assert ok.status_code == 202
    job_id = ok.json()["id"]
    assert guarded.post(f"/jobs/{job_id}/cancel").status_code == 401
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert guarded.post(f"/jobs/{job_id}/cancel", headers=bearer).status_code == 202
    assert guarded.get(f"/jobs/{job_id}").status_code == 200  # reading stays open
    # predictions stay open by default (no model yet: 503, not 401)
    assert guarded.post("/predict", json={"pixels": [0] * 784}).status_code == 503


def test_predictions_can_be_protected(settings: Settings) -> None:
    locked = Settings.model_validate(
        {**settings.model_dump(), "api_key": KEY, "protect_predict": True}
    )
    with TestClient(create_app(locked)) as client:
        assert client.post("/predict", json={"pixels": [0] * 784}).status_code == 401
        response = client.post("/predict", json={"pixels": [0] * 784}, headers={"X-API-Key": KEY})
        assert response.status_code == 503


def test_metrics_are_open_unless_protected(settings: Settings, guarded: TestClient) -> None:
    assert guarded.get("/metrics").status_code == 200  # API_KEY alone leaves /metrics open
    locked = Settings.model_validate(
        {**settings.model_dump(), "api_key": KEY, "protect_metrics": True}
    )
    with TestClient(create_app(locked)) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.json()["detail"]
        assert "mnist_" not in refused.text
        for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}):
            response = client.get("/metrics", headers=headers)
            assert response.status_code == 200 and "mnist_redis_up 1.0" in response.text
        assert client.get("/livez").status_code == 200  # the probes stay open


def test_queue_limit_gives_429(guarded: TestClient) -> None:
    headers = {"X-API-Key": KEY}
    for _ in range(2):
        assert guarded.post("/jobs", json={"epochs": 1}, headers=headers).status_code == 202
    response = guarded.post("/jobs", json={"epochs": 1}, headers=headers)
    assert response.status_code == 429 and response.headers["retry-after"]


def test_oversized_bodies_get_413_before_parsing(guarded: TestClient) -> None:
    big = b'{"pixels": [' + b"0," * 40_000 + b"0]}"
    response = guarded.post("/predict", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "larger than" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"pixels": ['
        for _ in range(100):
            yield b"0," * 1000
        yield b"0]}"

    streamed = guarded.post(
        "/predict", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413


def test_idempotency_key(guarded: TestClient, jobs: JobStore) -> None:
    headers = {"X-API-Key": KEY, "Idempotency-Key": "abc-123"}
    first = guarded.post("/jobs", json={"epochs": 3}, headers=headers)
    again = guarded.post("/jobs", json={"epochs": 3}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["location"] == f"/jobs/{first.json()['id']}"
    assert jobs.list_jobs(0, 10)[1] == 1
    other = guarded.post("/jobs", json={"epochs": 4}, headers=headers)
    assert other.status_code == 409
    assert jobs.list_jobs(0, 10)[1] == 1


def test_cors_off_unless_configured(settings: Settings, client: TestClient) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/jobs", headers=preflight).headers
    allowed = Settings.model_validate(
        {**settings.model_dump(), "cors_origins": ("https://app.example",)}
    )
    with TestClient(create_app(allowed)) as open_client:
        response = open_client.options("/jobs", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://app.example"
