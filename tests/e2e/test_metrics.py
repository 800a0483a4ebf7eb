"""``GET /metrics`` over a real uvicorn, worker and Redis: the worker's training
numbers reach the API's scrape through the job records in Redis."""

import uuid

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.data.mnist import Mnist
from tests.e2e.conftest import Stack
from tests.procs import wait_until
from tests.sse import events

pytestmark = pytest.mark.e2e

TINY = {"epochs": 3, "train_size": 2000, "minibatches": 20, "eta": 0.01, "input_scaling": "unit"}


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as ``{(name, sorted labels): value}``."""
    response = stack.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_training_requests_predictions_and_streams_are_counted(
    stack: Stack, mnist_data: Mnist
) -> None:
    before = scrape(stack)
    assert value(before, "mnist_redis_up") == 1

    job_id = stack.submit(**TINY)
    assert stack.wait(job_id)["status"] == "succeeded"
    for _ in range(3):
        stack.job(job_id)
    assert stack.http.get(f"/jobs/{uuid.uuid4()}").status_code == 404
    assert stack.http.get("/no/such/path").status_code == 404
    images = np.asarray(mnist_data.test_images[:5]).tolist()
    assert stack.http.post("/predict", json={"images": images}).status_code == 200
    assert stack.http.post("/predict", json={"pixels": images[0]}).status_code == 200

    after = scrape(stack)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    def requests(method: str, route: str, status: str) -> float:
        return grew("mnist_http_requests_total", method=method, route=route, status=status)

    # per route template, never per raw path
    assert requests("GET", "/jobs/{job_id}", "200") >= 3
    assert requests("GET", "/jobs/{job_id}", "404") == 1
    assert requests("GET", "<unmatched>", "404") == 1
    assert requests("POST", "/jobs", "202") == 1
    assert not any(job_id in dict(labels).get("route", "") for _, labels in after), (
        "a raw path leaked into a label"
    )
    assert grew("mnist_http_request_duration_seconds_count", method="POST", route="/predict") == 2
    assert grew("mnist_predictions_total", endpoint="/predict", alias="", variant="primary") == 6

    # the worker's training, read from Redis at scrape time
    jobs = stack.http.get("/jobs", params={"limit": 100}).json()["items"]
    histories = [stack.job(job["id"])["history"] for job in jobs]
    epochs = sum(len(history) for history in histories)
    seconds = sum(row["seconds"] for history in histories for row in history)
    assert value(after, "mnist_training_epochs_total") == epochs >= 3
    assert value(after, "mnist_epoch_duration_seconds_count") == epochs
    assert value(after, "mnist_epoch_duration_seconds_bucket", le="+Inf") == epochs
    assert value(after, "mnist_epoch_duration_seconds_sum") == pytest.approx(seconds)
    succeeded = sum(job["status"] == "succeeded" for job in jobs)
    assert value(after, "mnist_jobs", status="succeeded") == succeeded >= 1
    assert value(after, "mnist_models") >= 1


def test_jobs_by_status_queue_depth_and_open_streams(stack: Stack) -> None:
    running = stack.submit(epochs=2000, train_size=10_000)
    stack.wait_epoch(running, 1)
    queued = [stack.submit(**TINY) for _ in range(2)]
    samples = scrape(stack)
    assert value(samples, "mnist_jobs", status="running") == 1
    assert value(samples, "mnist_jobs", status="queued") == 2
    assert value(samples, "mnist_queue_depth") == 2

    # a live stream is counted while open and uncounted once the client goes away
    with stack.http.stream("GET", f"/jobs/{running}/events") as response:
        stream = events(response)  # kept: dropping the iterator would close the response
        next(stream)
        assert value(scrape(stack), "mnist_event_streams") == 1
    wait_until(lambda: value(scrape(stack), "mnist_event_streams") == 0, 10, "the stream to close")

    for job_id in [running, *queued]:
        assert stack.http.post(f"/jobs/{job_id}/cancel").status_code == 202
    stack.wait(running)
    samples = scrape(stack)
    assert value(samples, "mnist_jobs", status="running") == 0
    assert value(samples, "mnist_jobs", status="queued") == 0
    assert value(samples, "mnist_jobs", status="cancelled") == 3
