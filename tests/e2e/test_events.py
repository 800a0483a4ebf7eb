"""``GET /jobs/{id}/events`` over a real uvicorn, worker and Redis."""

import uuid

import pytest

from tests.e2e.conftest import Stack
from tests.sse import collect, events

pytestmark = pytest.mark.e2e

TINY = {"epochs": 3, "train_size": 2000, "minibatches": 20, "eta": 0.01, "input_scaling": "unit"}


def test_stream_follows_a_running_job_live_to_its_end(stack: Stack) -> None:
    """Epoch events arrive while the job runs: we cancel it after the second one."""
    job_id = stack.submit(epochs=2000, train_size=10_000)
    seen: list[tuple[str, dict]] = []
    with stack.http.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event, data, event_id in events(response):
            seen.append((event, data))
            if event == "epoch":
                assert event_id == str(data["epoch"])
                assert data["epochs"] == 2000 and data["cost"] > 0 and data["seconds"] > 0
                if data["epoch"] == 2:
                    assert stack.http.post(f"/jobs/{job_id}/cancel").status_code == 202
    names = [event for event, _ in seen]
    assert names[0] == "status" and seen[0][1]["id"] == job_id
    assert "running" in [data["status"] for event, data in seen if event == "status"]
    assert names[-1] == "end" and names.count("end") == 1
    final = seen[-1][1]
    assert final["status"] == "cancelled" and final["model_id"] is None
    epochs = [data["epoch"] for event, data in seen if event == "epoch"]
    assert epochs == list(range(1, final["epoch"] + 1)) and len(epochs) >= 2
    # the stream's rows are the job's history
    history = stack.job(job_id)["history"]
    assert [data["cost"] for event, data in seen if event == "epoch"] == [
        row["cost"] for row in history
    ]


def test_finished_job_replays_its_history_then_ends(stack: Stack) -> None:
    job_id = stack.submit(**TINY)
    job = stack.wait(job_id)
    assert job["status"] == "succeeded"
    seen = collect(stack.http, f"/jobs/{job_id}/events")
    assert [event for event, _, _ in seen] == ["epoch", "epoch", "epoch", "end"]
    assert [data["epoch"] for _, data, _ in seen[:3]] == [1, 2, 3]
    assert [data["cost"] for _, data, _ in seen[:3]] == [row["cost"] for row in job["history"]]
    end = seen[-1][1]
    assert end["status"] == "succeeded" and end["model_id"] == job_id
    assert end["test_accuracy"] == job["test_accuracy"] and "history" not in end

    # a reconnecting client resumes after the last epoch it saw
    resumed = collect(stack.http, f"/jobs/{job_id}/events", headers={"Last-Event-ID": "2"})
    assert [(event, data.get("epoch")) for event, data, _ in resumed] == [
        ("epoch", 3),
        ("end", 3),
    ]


def test_unknown_and_malformed_ids(stack: Stack) -> None:
    response = stack.http.get(f"/jobs/{uuid.uuid4()}/events")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "not found" in response.json()["detail"]
    assert stack.http.get("/jobs/not-a-uuid/events").status_code == 422
