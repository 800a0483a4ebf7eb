"""Issue 10 at the API's edge, over real Redis: a job too big for its worker is a 422
naming the fields, hostile pictures are 413, and every refusal at a limit is counted
in ``mnist_rejected_requests_total{reason}``."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from api.metrics import REJECT_REASONS
from bench import hostile
from shared.config import Settings
from shared.jobs.store import JobStore

ISSUE_JOB = {"n_hidden": 1024, "minibatches": 1, "dtype": "float64", "epochs": 1}


@pytest.fixture
def limited(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"max_queued_jobs": 2}))
    with TestClient(app) as client:
        yield client


def rejected(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    return {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mnist_rejected_requests_total"
    }


def test_a_job_too_big_for_its_worker_is_a_422_naming_the_fields(
    limited: TestClient, jobs: JobStore
) -> None:
    response = limited.post("/jobs", json=ISSUE_JOB)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert {tuple(e["loc"]) for e in detail} == {
        ("body", "n_hidden"),
        ("body", "minibatches"),
        ("body", "train_size"),
        ("body", "dtype"),
    }
    assert "JOB_MEMORY_LIMIT_MB" in detail[0]["msg"]
    assert jobs.list_jobs(0, 10)[1] == 0  # no job record, nothing queued
    # the same job through ?preset=fast: the body's fields still make it too big
    assert limited.post("/jobs?preset=fast", json=ISSUE_JOB).status_code == 422
    # the book's defaults and the fast preset are accepted
    assert limited.post("/jobs", json={"epochs": 1}).status_code == 202
    assert limited.post("/jobs?preset=fast").status_code == 202


def test_a_bigger_limit_accepts_it(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"job_memory_limit_mb": 4096.0}))
    with TestClient(app) as client:
        assert client.post("/jobs", json=ISSUE_JOB).status_code == 202


def test_hostile_pictures_are_413(limited: TestClient) -> None:
    for data in (hostile.bomb(), hostile.one_row_grey(), hostile.one_row_rgba16()):
        response = limited.post("/predict/image", files={"file": ("x.png", data)})
        assert response.status_code == 413, response.text
        assert "pixels" in response.json()["detail"]


def test_every_limit_is_counted_by_reason(limited: TestClient) -> None:
    assert rejected(limited) == dict.fromkeys(REJECT_REASONS, 0.0)
    assert limited.post("/jobs", json=ISSUE_JOB).status_code == 422
    for _ in range(2):
        assert limited.post("/jobs", json={"epochs": 1}).status_code == 202
    assert limited.post("/jobs", json={"epochs": 1}).status_code == 429
    assert limited.post("/jobs", json={"epochs": 1}).status_code == 429
    big = b"0" * (Settings().max_body_bytes + 1)
    response = limited.post("/predict", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    bomb = limited.post("/predict/image", files={"file": ("b.png", hostile.png(9000, 10))})
    assert bomb.status_code == 413
    garbage = limited.post("/predict/image", files={"file": ("g.png", b"not a picture")})
    assert garbage.status_code == 415
    blank = limited.post("/predict/image", files={"file": ("w.png", hostile.png(50, 50))})
    assert blank.status_code == 422  # no digit: not a limit, not counted
    assert rejected(limited) == {
        "body": 1.0,
        "body_timeout": 0.0,  # tests/e2e/test_slow_bodies.py provokes these two
        "body_budget": 0.0,
        "image_size": 1.0,
        "image_type": 1.0,
        "job_memory": 1.0,
        "queue": 2.0,
    }
