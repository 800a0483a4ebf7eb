"""Corrections and fine-tuning with real processes: uvicorn and the API killed with -9,
redis-server restarted empty, a worker killed mid fine-tune."""

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from shared.data.mnist import Mnist
from tests.digits import dark_on_light_png
from tests.e2e.conftest import FAST_RECOVERY, Redis, Stack, running_stack
from tests.procs import (
    free_port,
    service_env,
    start_api,
    start_worker,
    stop,
    wait_until,
)

pytestmark = pytest.mark.e2e


def kill9(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the process and its children, no goodbye
    proc.wait(10)


def send(http: httpx.Client, data: Mnist, index: int) -> dict:
    body = {
        "pixels": np.asarray(data.test_images[index]).tolist(),
        "label": int(data.test_labels[index]),
    }
    response = http.post("/feedback", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_corrections_survive_an_api_kill_and_redis_losing_its_data(
    tmp_path: Path, mnist_data: Mnist
) -> None:
    server = Redis(tmp_path / "redis")
    server.start()
    env = service_env(server.url, tmp_path / "models", **FAST_RECOVERY)
    api_port = free_port()
    url = f"http://127.0.0.1:{api_port}"
    procs: list[subprocess.Popen] = []
    try:
        api = start_api(env, tmp_path / "api.log", api_port)
        procs.append(api)
        with httpx.Client(base_url=url, timeout=30) as http:
            sent = [send(http, mnist_data, i) for i in range(3)]
            png = dark_on_light_png(mnist_data.test_images[3], 3.0, (120, 100), (10, 5))
            picture = http.post(
                "/feedback",
                files={"file": ("d.png", png, "image/png")},
                data={"label": str(int(mnist_data.test_labels[3])), "predicted": "0"},
            )
            assert picture.status_code == 201
            sent.append(picture.json())
            before = {item["id"]: http.get(f"/feedback/{item['id']}").json() for item in sent}
            stats = http.get("/feedback/stats").json()

            kill9(api)  # the API dies mid-life
            api = start_api(env, tmp_path / "api.log", api_port)
            procs.append(api)
            assert {i: http.get(f"/feedback/{i}").json() for i in before} == before
            assert http.get("/feedback").json()["total"] == 4

            # Redis loses everything: a fresh, empty server on the same port
            server.stop()
            server.start()
            assert redis.Redis.from_url(server.url).dbsize() == 0
            stop(api)
            api = start_api(env, tmp_path / "api.log", api_port)  # rebuilds at start
            procs.append(api)
            assert http.get("/feedback").json()["total"] == 4
            assert http.get("/feedback/stats").json() == stats
            assert {i: http.get(f"/feedback/{i}").json() for i in before} == before

            # again, with the API left running: a worker's recovery pass rebuilds it
            server.stop()
            server.start()
            assert wait_until(
                lambda: _total(http) == 0, 30, "the API to answer from the empty Redis"
            )
            procs.append(start_worker(env, tmp_path / "worker.log", "--concurrency", "1"))
            wait_until(lambda: _total(http) == 4, 60, "the worker to rebuild the index")
            assert http.get("/feedback/stats").json() == stats
    finally:
        for proc in reversed(procs):
            stop(proc)
        server.stop()


def _total(http: httpx.Client) -> int | None:
    response = http.get("/feedback")
    return response.json()["total"] if response.status_code == 200 else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("finetune"), **FAST_RECOVERY) as stack:
        yield stack


def test_a_fine_tune_resumes_after_a_worker_kill_on_the_same_corrections(
    stack: Stack, mnist_data: Mnist
) -> None:
    parent_id = stack.submit(
        n_hidden=300, epochs=2, train_size=2000, input_scaling="unit", eta=0.05, minibatches=20
    )
    parent = stack.wait(parent_id)
    assert parent["status"] == "succeeded", parent
    sent = [send(stack.http, mnist_data, i) for i in range(40)]
    assert stack.http.put("/aliases/production", json={"model_id": parent_id}).status_code == 200

    conflict = stack.http.post("/jobs", json={"init_model": parent_id, "n_hidden": 50})
    assert conflict.status_code == 422
    assert conflict.json()["detail"][0]["loc"] == ["body", "n_hidden"]

    job_id = stack.submit(
        init_model="production",
        epochs=60,
        train_size=5000,
        eta=0.05,
        minibatches=20,
        feedback_weight=10,
        feedback_holdout=0.2,
        promote={"alias": "production", "metric": "feedback_accuracy", "min_gain": -1},
    )
    stack.wait_epoch(job_id, 2)
    frozen = stack.http.get(f"/jobs/{job_id}/feedback").json()
    assert sorted(frozen) == sorted(item["id"] for item in sent)
    summary = stack.job(job_id)["feedback"]
    assert summary["count"] == 40

    worker = stack.workers.pop()
    kill9(worker)
    stuck = stack.job(job_id)
    assert stuck["status"] == "running" and stuck["epoch"] < 60
    late = send(stack.http, mnist_data, 99)  # arrives after the job froze its list
    stack.start_worker("--concurrency", "1")
    job = stack.wait(job_id, timeout=180)

    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert [row["epoch"] for row in job["history"]] == list(range(1, 61))
    assert job["feedback"] == summary  # frozen once, never again
    assert stack.http.get(f"/jobs/{job_id}/feedback").json() == frozen
    assert late["id"] not in frozen
    log = (stack.logs / "worker.log").read_text()
    assert f"job {job_id}: resuming from checkpoint at epoch" in log

    card = stack.http.get(f"/models/{job_id}").json()
    assert card["parent_model_id"] == parent_id
    assert job["init_model_id"] == parent_id and job["init_model"] == "production"
    assert card["params"]["n_hidden"] == 300  # inherited
    assert card["feedback_count"] == 32  # 40 less the 20% held out
    assert 0 <= card["feedback_accuracy"] <= 1 and 0 <= card["parent_feedback_accuracy"] <= 1
    assert card["test_accuracy"] > 0.8
    profile = card["reference_profile"]  # input drift's: what it trained on, corrections too
    assert profile["source"] == "training" and profile["inputs"] == 5000 + 32 * 10
    assert sum(profile["ink_mass"]["counts"]) == profile["inputs"]
    # the gate measured the incumbent (the parent) on the same held-out corrections
    promotion = job["promotion"]
    assert promotion["metric"] == "feedback_accuracy"
    assert promotion["incumbent_model_id"] == parent_id
    assert promotion["incumbent_accuracy"] == card["parent_feedback_accuracy"]
    assert promotion["candidate_accuracy"] == card["feedback_accuracy"]
    floor_ok = card["test_accuracy"] >= parent["test_accuracy"] - 0.005
    assert promotion["promoted"] == floor_ok, promotion
