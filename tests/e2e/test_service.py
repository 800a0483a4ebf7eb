"""The issue's "done when", over HTTP against real processes: train on real MNIST,
follow progress, predict, list, cancel."""

import numpy as np
import pytest

from shared.data.mnist import Mnist
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def test_train_follow_and_predict(stack: Stack, mnist_data: Mnist) -> None:
    job_id = stack.submit(epochs=20)
    seen = stack.wait_epoch(job_id, 3)
    assert seen["status"] in ("running", "succeeded")
    assert [row["epoch"] for row in seen["history"]][:3] == [1, 2, 3]
    job = stack.wait(job_id)
    assert job["status"] == "succeeded", job
    assert job["epoch"] == job["epochs"] == 20
    assert [row["epoch"] for row in job["history"]] == list(range(1, 21))
    assert all(row["seconds"] > 0 and row["cost"] > 0 for row in job["history"])
    assert job["history"][-1]["cost"] < job["history"][0]["cost"]
    assert job["model_id"] == job_id and job["started_at"] and job["finished_at"]
    assert job["test_accuracy"] > 0.85 and job["train_accuracy"] > 0.85

    n = 1000
    body = {"images": np.asarray(mnist_data.test_images[:n]).tolist()}
    response = stack.http.post("/predict", json=body)
    assert response.status_code == 200
    labels = np.array(response.json()["labels"])
    assert np.mean(labels == mnist_data.test_labels[:n]) > 0.85
    one = stack.http.post("/predict", json={"pixels": body["images"][0]}).json()
    assert one["label"] == labels[0] and one["model_id"] == job_id

    models = stack.http.get("/models").json()
    assert models["items"][0]["id"] == job_id
    assert models["items"][0]["test_accuracy"] == job["test_accuracy"]
    assert (stack.model_dir / f"{job_id}.npz").exists()
    listed = stack.http.get("/jobs").json()["items"]
    assert listed[0]["id"] == job_id
    assert stack.http.post(f"/jobs/{job_id}/cancel").status_code == 409


def test_cancel_running_and_queued(stack: Stack) -> None:
    """One training process: the second job waits in the queue behind the first."""
    running = stack.submit(epochs=2000, train_size=10_000)
    queued = stack.submit(epochs=1, train_size=1000)
    stack.wait_epoch(running, 2)
    assert stack.job(queued)["status"] == "queued"

    response = stack.http.post(f"/jobs/{queued}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    response = stack.http.post(f"/jobs/{running}/cancel")
    assert response.status_code == 202

    job = stack.wait(running, timeout=30)
    assert job["status"] == "cancelled" and job["model_id"] is None
    assert 2 <= job["epoch"] < 2000 and len(job["history"]) == job["epoch"]
    assert not (stack.model_dir / f"{running}.npz").exists()
    assert stack.http.get(f"/models/{running}").status_code == 404

    # The worker now takes the cancelled job's message off the queue and must not run it.
    probe = stack.submit(epochs=1, train_size=1000)
    assert stack.wait(probe)["status"] == "succeeded"
    never = stack.job(queued)
    assert never["status"] == "cancelled" and never["attempts"] == 0 and never["epoch"] == 0
