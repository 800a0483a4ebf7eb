"""``/sweeps`` in-process (TestClient) over a real, private Redis: the 422s name the
field, submission queues the first ``parallel`` trials as jobs, cancel, 404/409/401.
No worker runs here: the trials' messages wait in the (real) broker queue."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from shared.config import Settings
from shared.redisdb.client import connect

PREFIX = "sweepapi:"
BASE = {"epochs": 3, "train_size": 2000, "input_scaling": "unit"}


@pytest.fixture
def sweep_settings(redis_url: str, tmp_path: Path) -> Settings:
    client = connect(redis_url)
    client.flushdb()  # our private server: nothing else lives there
    client.close()
    return Settings(redis_url=redis_url, key_prefix=PREFIX, model_dir=tmp_path / "models")


@pytest.fixture
def http(sweep_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(sweep_settings)) as client:
        yield client


def body(**changes: Any) -> dict[str, Any]:
    return {
        "base": BASE,
        "space": {"eta": {"low": 0.001, "high": 0.1, "log": True}},
        "trials": 4,
        "parallel": 2,
        "seed": 3,
        **changes,
    }


def locs(response: Any) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize(
    ("changes", "loc", "words"),
    [
        ({"space": {"learning_rate": {"low": 0.1, "high": 1}}}, "learning_rate", "not a training"),
        ({"space": {"eta": {"low": 0.1, "high": 0.01}}}, "eta", "low (0.1) > high (0.01)"),
        ({"space": {"n_hidden": {"low": 10, "high": 5000}}}, "n_hidden", "out of bounds"),
        ({"space": {"eta": {"low": 0, "high": 0.1}}}, "eta", "out of bounds"),
        ({"space": {"n_hidden": {"low": 10.5, "high": 20}}}, "n_hidden", "integer"),
        ({"space": {"l2": {"low": 0, "high": 0.1, "log": True}}}, "l2", "log scale"),
        ({"space": {"lr_schedule": {"low": 0, "high": 1}}}, "lr_schedule", "not numeric"),
        ({"space": {"shuffle": {"low": 0, "high": 1}}}, "shuffle", "not numeric"),
        ({"space": {"dtype": {"choices": ["float32", "x"]}}}, "dtype", "out of"),
        ({"space": {"early_stopping": {"choices": [1]}}}, "early_stopping", "not a training"),
        ({"space": {"epochs": {"low": 2, "high": 9}}}, "epochs", "set in base too"),
        ({"sampler": "grid"}, "eta", "grid sampler takes choices only"),
        (
            {"space": {"validation_fraction": {"low": 0.0, "high": 0.2}}},
            "validation_fraction",
            "must be > 0",
        ),
    ],
)
def test_space_errors_name_the_field(
    http: TestClient, changes: dict[str, Any], loc: str, words: str
) -> None:
    response = http.post("/sweeps", json=body(**changes))
    assert ["body", "space", loc] in locs(response)
    message = " ".join(error["msg"] for error in response.json()["detail"])
    assert words in message and loc in message


def test_other_request_errors_name_the_field(http: TestClient) -> None:
    base = {**BASE, "validation_fraction": 0}
    assert ["body", "base", "validation_fraction"] in locs(
        http.post("/sweeps", json=body(base=base))
    )
    grid = body(sampler="grid", space={"eta": {"choices": [0.1, 0.01]}}, trials=3)
    assert ["body", "trials"] in locs(http.post("/sweeps", json=grid))
    assert ["body", "trials"] in locs(http.post("/sweeps", json=body(trials=201)))
    assert ["body", "parallel"] in locs(http.post("/sweeps", json=body(parallel=33)))
    assert ["body", "base", "colour"] in locs(
        http.post("/sweeps", json=body(base={**BASE, "colour": 1}))
    )
    assert ["body", "sampler"] in locs(http.post("/sweeps", json=body(sampler="cma")))
    assert ["body", "space"] in locs(http.post("/sweeps", json=body(space={})))
    no_split = body(base={**BASE, "validation_fraction": 0, "early_stopping": {"patience": 2}})
    assert ["body", "base", "validation_fraction"] in locs(http.post("/sweeps", json=no_split))


def test_submission_queues_parallel_trials_as_jobs(http: TestClient) -> None:
    response = http.post("/sweeps", json=body())
    assert response.status_code == 202, response.text
    sweep_id = response.json()["id"]
    assert response.headers["location"] == f"/sweeps/{sweep_id}"
    assert response.json()["status"] == "queued"
    sweep = http.get(f"/sweeps/{sweep_id}").json()
    assert sweep["base"]["validation_fraction"] == 0.1  # a sweep's default
    assert [t["number"] for t in sweep["trials"]] == [0, 1]
    assert all(t["state"] == "queued" for t in sweep["trials"])
    assert sweep["counts"]["queued"] == 2 and sweep["best"] is None
    jobs = http.get("/jobs").json()["items"]
    trials = {job["trial"]: job for job in jobs if job["sweep_id"] == sweep_id}
    assert set(trials) == {0, 1}
    for trial in sweep["trials"]:
        job = trials[trial["number"]]
        assert job["id"] == trial["job_id"] and job["status"] == "queued"
        assert job["params"]["eta"] == trial["params"]["eta"]
        assert 0.001 <= job["params"]["eta"] <= 0.1 and job["params"]["epochs"] == 3
    listed = http.get("/sweeps", params={"limit": 1}).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == sweep_id


def test_preset_and_grid_integers(http: TestClient) -> None:
    grid = body(
        base={"train_size": 2000},
        space={"n_hidden": {"choices": [20, 40]}, "epochs": {"choices": [2, 3]}},
        sampler="grid",
        parallel=4,
    )
    response = http.post("/sweeps", json=grid, params={"preset": "fast"})
    assert response.status_code == 202, response.text
    sweep = http.get(f"/sweeps/{response.json()['id']}").json()
    assert sweep["base"]["minibatches"] == 600 and sweep["base"]["input_scaling"] == "unit"
    points = sorted((t["params"]["n_hidden"], t["params"]["epochs"]) for t in sweep["trials"])
    assert points == [(20, 2), (20, 3), (40, 2), (40, 3)]  # every grid point once
    assert all(isinstance(v, int) for t in sweep["trials"] for v in t["params"].values())


def test_cancel_ends_queued_trials_and_then_409(http: TestClient, sweep_settings: Settings) -> None:
    sweep_id = http.post("/sweeps", json=body()).json()["id"]
    response = http.post(f"/sweeps/{sweep_id}/cancel")
    assert response.status_code == 202, response.text
    sweep = http.get(f"/sweeps/{sweep_id}").json()
    assert sweep["status"] == "cancelled" and sweep["cancel_requested"]
    assert [t["state"] for t in sweep["trials"]] == ["cancelled", "cancelled"]
    for trial in sweep["trials"]:
        assert http.get(f"/jobs/{trial['job_id']}").json()["status"] == "cancelled"
    assert http.post(f"/sweeps/{sweep_id}/cancel").status_code == 409
    http.post("/sweeps", json=body())  # a second one, queued
    metrics = http.get("/metrics").text
    assert 'mnist_sweeps{status="cancelled"} 1.0' in metrics
    assert 'mnist_sweeps{status="queued"} 1.0' in metrics
    assert 'mnist_sweep_trials{state="cancelled"} 2.0' in metrics
    assert 'mnist_sweep_trials{state="queued"} 2.0' in metrics
    assert 'mnist_sweep_trials{state="complete"} 0.0' in metrics
    missing = "00000000-0000-0000-0000-000000000000"
    assert http.get(f"/sweeps/{missing}").status_code == 404
    assert http.post(f"/sweeps/{missing}/cancel").status_code == 404
    assert http.get(f"/sweeps/{missing}/events").status_code == 404


def test_sweeps_need_the_api_key_when_set(sweep_settings: Settings) -> None:
    keyed = Settings(**{**sweep_settings.model_dump(), "api_key": "k"})
    with TestClient(create_app(keyed)) as http:
        assert http.post("/sweeps", json=body()).status_code == 401
        accepted = http.post("/sweeps", json=body(), headers={"X-API-Key": "k"})
        assert accepted.status_code == 202
        sweep_id = accepted.json()["id"]
        assert http.post(f"/sweeps/{sweep_id}/cancel").status_code == 401
        assert http.get(f"/sweeps/{sweep_id}").status_code == 200


def test_optuna_journal_lives_under_the_key_prefix(http: TestClient, redis_url: str) -> None:
    sweep_id = http.post("/sweeps", json=body()).json()["id"]
    client: redis.Redis = connect(redis_url)
    keys = client.keys(f"*{sweep_id}*")
    assert keys and all(key.startswith(PREFIX) for key in keys)
    assert f"{PREFIX}sweep:{sweep_id}:optuna:log_number" in keys
