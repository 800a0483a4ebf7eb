"""Sweeps end to end: the real API, two real Celery workers, a private Redis. A small
sweep runs to the end (never more than `parallel` trials active, its event stream,
its promotion), a sweep is cancelled, a worker is killed with -9 mid-sweep, early
stopping ends a job. Short leases keep recovery quick."""

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import FAST_RECOVERY, Stack, two_worker_stack
from tests.procs import free_port, start_api, stop, wait_until
from tests.sse import collect

pytestmark = pytest.mark.e2e

SETTINGS = {**FAST_RECOVERY, "BLAS_THREADS": "1"}  # two workers on two shared cores
SMALL = {
    "epochs": 4,
    "train_size": 2000,
    "minibatches": 20,
    "input_scaling": "unit",
    "validation_fraction": 0.2,
}
ENDED = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack with a second worker beside the first."""
    with two_worker_stack(tmp_path_factory.mktemp("sweeps"), **SETTINGS) as stack:
        yield stack


def submit(stack: Stack, **body: Any) -> str:
    response = stack.http.post("/sweeps", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/sweeps/{response.json()['id']}"
    return response.json()["id"]


def sweep(stack: Stack, sweep_id: str) -> dict:
    response = stack.http.get(f"/sweeps/{sweep_id}")
    assert response.status_code == 200, response.text
    return response.json()


def trial_jobs(stack: Stack, sweep_id: str) -> list[dict]:
    items = stack.http.get("/jobs", params={"limit": 100}).json()["items"]
    return [job for job in items if job["sweep_id"] == sweep_id]


def wait_sweep(stack: Stack, sweep_id: str, timeout: float = 90) -> dict:
    def ended() -> dict | None:
        record = sweep(stack, sweep_id)
        return record if record["status"] in ENDED and record["settled"] else None

    return wait_until(ended, timeout, f"sweep {sweep_id} to end", interval=0.2)


def assert_trials_exactly(record: dict, trials: int) -> None:
    numbers = [t["number"] for t in record["trials"]]
    assert sorted(numbers) == list(range(trials)), numbers  # each number once, none skipped
    assert len({t["job_id"] for t in record["trials"]}) == trials


def test_small_sweep_ends_with_its_best_trial_promoted(two: Stack) -> None:
    sweep_id = submit(
        two,
        base=SMALL,
        space={
            "eta": {"low": 0.001, "high": 0.5, "log": True},
            "n_hidden": {"low": 10, "high": 60},
        },
        trials=4,
        parallel=2,
        sampler="random",
        seed=11,
        promote={"alias": "sweepbest"},
    )
    events: list[tuple[str, Any, str | None]] = []
    stream = threading.Thread(
        target=lambda: events.extend(collect(two.http, f"/sweeps/{sweep_id}/events"))
    )
    stream.start()
    most_active = 0
    while True:  # sample the jobs while the sweep runs
        active = [j for j in trial_jobs(two, sweep_id) if j["status"] in ("queued", "running")]
        assert len(active) <= 2, active
        most_active = max(most_active, len(active))
        record = sweep(two, sweep_id)
        if record["status"] in ENDED and record["settled"]:
            break
        time.sleep(0.05)
    assert most_active == 2  # it did run two at once
    assert record["status"] == "succeeded" and record["wall_seconds"] > 0
    assert_trials_exactly(record, 4)
    complete = [t for t in record["trials"] if t["state"] == "complete"]
    pruned = [t for t in record["trials"] if t["state"] == "pruned"]  # the median pruner is on
    assert len(complete) + len(pruned) == 4 and len(complete) >= 2
    assert all(t["epochs_run"] == 4 for t in complete)
    assert all(1 < t["epochs_run"] < 4 for t in pruned)
    assert record["counts"]["complete"] == len(complete)
    values = [t["value"] for t in complete]
    best = record["best"]
    assert best["value"] == max(values)
    winner = next(t for t in record["trials"] if t["number"] == best["number"])
    assert best["params"] == winner["params"] and best["model_id"] == winner["model_id"]
    for trial in record["trials"]:
        assert isinstance(trial["params"]["n_hidden"], int)  # integers stay integers
        job = two.job(trial["job_id"])
        assert job["sweep_id"] == sweep_id and job["trial"] == trial["number"]
        assert job["params"]["n_hidden"] == trial["params"]["n_hidden"]
        # the value is validation accuracy (of the last epoch), never the test set's
        assert trial["value"] == job["history"][-1]["val_accuracy"]
        if trial["state"] == "complete":
            assert job["status"] == "succeeded" and job["model_id"] == trial["model_id"]
        else:
            assert job["status"] == "cancelled" and job["model_id"] is None
            assert job["pruned_at_epoch"] == trial["epochs_run"] == job["epoch"]
    alias = two.http.get("/aliases/sweepbest").json()
    assert alias["model_id"] == best["model_id"]
    assert record["promotion"]["promoted"] and record["promotion"]["alias"] == "sweepbest"
    stream.join(30)
    kinds = [event for event, _, _ in events]
    assert kinds[0] == "status" and kinds[-1] == "end"
    assert sorted(d["number"] for e, d, _ in events if e == "trial_start") == [0, 1, 2, 3]
    ends = {d["number"]: d["state"] for e, d, _ in events if e == "trial_end"}
    assert ends == {t["number"]: t["state"] for t in record["trials"]}
    assert events[-1][1]["best"] == best


def test_cancel_stops_running_trials_at_an_epoch_boundary(two: Stack) -> None:
    sweep_id = submit(
        two,
        base={**SMALL, "epochs": 3000},
        space={"eta": {"low": 0.001, "high": 0.1}},
        trials=5,
        parallel=2,
    )
    wait_until(
        lambda: any(j["epoch"] >= 1 for j in trial_jobs(two, sweep_id)), 60, "a trial to train"
    )
    response = two.http.post(f"/sweeps/{sweep_id}/cancel")
    assert response.status_code == 202, response.text
    record = wait_sweep(two, sweep_id, timeout=60)
    assert record["status"] == "cancelled"
    assert len(record["trials"]) == 2  # no trial started after the cancel
    for trial in record["trials"]:
        assert trial["state"] == "cancelled"
        job = two.job(trial["job_id"])
        assert job["status"] == "cancelled" and job["model_id"] is None
        assert job["epoch"] < 3000
    assert two.http.post(f"/sweeps/{sweep_id}/cancel").status_code == 409
    listed = two.http.get("/sweeps").json()
    assert listed["items"][0]["id"] == sweep_id  # newest first


def two_trials_training(stack: Stack, epochs: int, trials: int, seed: int, past: int) -> str:
    """A sweep of long trials, two at a time and never pruned, once both of its running
    trials have trained past epoch ``past``: one on each worker, so that stopping a
    worker stops a trial mid-training."""
    sweep_id = submit(
        stack,
        base={**SMALL, "epochs": epochs, "train_size": 10_000},
        space={"eta": {"low": 0.005, "high": 0.05}},
        trials=trials,
        parallel=2,
        pruner="none",
        seed=seed,
    )

    def running_on_both() -> list[dict] | None:
        jobs = [j for j in trial_jobs(stack, sweep_id) if j["status"] == "running"]
        return jobs if len(jobs) == 2 and all(j["epoch"] >= past for j in jobs) else None

    wait_until(running_on_both, 60, "two trials training")
    return sweep_id


def test_warm_shutdown_mid_sweep_puts_the_trial_back_and_the_sweep_completes(
    two: Stack,
) -> None:
    """SIGTERM to a worker while it trains a trial: the trial checkpoints, goes back to
    the queue (no new trial takes its place) and resumes; exactly `trials` trials."""
    sweep_id = two_trials_training(two, epochs=40, trials=3, seed=9, past=2)
    stopping = two.workers.pop()
    stopping.send_signal(signal.SIGTERM)  # celery's warm shutdown
    stopping.wait(30)
    log = (two.logs / "worker.log").read_text()
    paused = [j for j in trial_jobs(two, sweep_id) if f"job {j['id']}: worker stopping" in log]
    assert len(paused) == 1  # its trial went back to the queue (the other worker may take it)
    two.start_worker("--concurrency", "1", "--hostname", "third@%h")
    record = wait_sweep(two, sweep_id, timeout=120)
    assert record["status"] == "succeeded", record
    assert_trials_exactly(record, 3)
    for trial in record["trials"]:
        job = two.job(trial["job_id"])
        assert job["status"] == "succeeded" and job["attempts"] == 1  # a stop is no attempt
        assert [row["epoch"] for row in job["history"]] == list(range(1, 41))
    log = (two.logs / "worker.log").read_text()
    assert f"job {paused[0]['id']}: resuming from checkpoint at epoch" in log


def test_an_api_killed_mid_sweep_loses_nothing(two: Stack) -> None:
    """The API holds no sweep state: kill -9 the process a sweep was started through,
    start another, and the sweep ends with exactly its trials, read through the new one."""
    port = free_port()
    api = start_api(two.env, two.logs / "api-doomed.log", port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as doomed:
        response = doomed.post(
            "/sweeps",
            json={
                "base": SMALL,
                "space": {"eta": {"low": 0.01, "high": 0.1}},
                "trials": 3,
                "parallel": 2,
                "pruner": "none",
                "seed": 11,
            },
        )
        assert response.status_code == 202, response.text
        sweep_id = response.json()["id"]
        wait_until(lambda: trial_jobs(two, sweep_id), 30, "a trial queued")
    api.kill()
    api.wait(10)
    port = free_port()
    api = start_api(two.env, two.logs / "api-again.log", port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as again:
            stack = Stack(again.base_url, two.redis_url, two.model_dir, two.env, two.logs, again)
            record = wait_sweep(stack, sweep_id, timeout=120)
        assert record["status"] == "succeeded", record
        assert_trials_exactly(record, 3)
    finally:
        stop(api)


def test_worker_killed_mid_sweep_still_runs_exactly_the_trials(two: Stack) -> None:
    """kill -9 of a whole worker (main process and pool) while it trains a trial: the
    trial resumes from its checkpoint on the other worker, the sweep goes on, and it
    ends with exactly `trials` trials, no number twice."""
    sweep_id = two_trials_training(two, epochs=60, trials=4, seed=5, past=3)
    victim = two.workers.pop()
    os.killpg(victim.pid, signal.SIGKILL)  # no goodbye: its trial stays "running"
    victim.wait(10)
    record = wait_sweep(two, sweep_id, timeout=150)
    assert record["status"] == "succeeded", record
    assert_trials_exactly(record, 4)
    assert all(t["state"] == "complete" for t in record["trials"])
    jobs = [two.job(t["job_id"]) for t in record["trials"]]
    for job in jobs:
        assert [row["epoch"] for row in job["history"]] == list(range(1, 61))
    assert max(job["attempts"] for job in jobs) == 2  # the killed one, resumed
    log = (two.logs / "worker.log").read_text()
    assert "resuming from checkpoint at epoch" in log
    assert record["best"]["value"] == max(t["value"] for t in record["trials"])


def test_early_stopping_ends_a_job_and_keeps_its_best_epoch(two: Stack) -> None:
    body = {
        "epochs": 40,
        "train_size": 2000,
        "minibatches": 20,
        "eta": 1.0,
        "alpha": 0.5,
        "input_scaling": "unit",
        "validation_fraction": 0.2,
        "early_stopping": {"patience": 2},
    }
    job = two.wait(two.submit(**body), timeout=60)
    assert job["status"] == "succeeded"
    assert job["stopped_at_epoch"] == job["epoch"] < 40
    assert job["best_epoch"] == job["stopped_at_epoch"] - 2
    accuracies = [row["val_accuracy"] for row in job["history"]]
    assert len(accuracies) == job["epoch"]
    assert accuracies[job["best_epoch"] - 1] == max(accuracies)
    no_split = {**body, "validation_fraction": 0}
    response = two.http.post("/jobs", json=no_split)
    assert response.status_code == 422
    assert "early_stopping needs a validation split" in response.text
