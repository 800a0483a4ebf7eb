"""Sweeps pass the limits every job passes (issue 17, point 5): no trial may need more
memory than ``JOB_MEMORY_LIMIT_MB``, and trials count in ``MAX_QUEUED_JOBS``."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from shared.config import Settings
from shared.schemas.jobs import JobStatus
from shared.services import Services

BASE = {"epochs": 1, "train_size": 1000, "minibatches": 10}


def sweep(parallel: int, trials: int = 8, **space: object) -> dict:
    return {
        "base": BASE,
        "space": space or {"eta": {"low": 0.01, "high": 0.1}},
        "trials": trials,
        "parallel": parallel,
        "seed": 1,
    }


LIMIT = 6


@pytest.fixture
def small(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_queued_jobs": LIMIT})


@pytest.fixture
def limited(small: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(small)) as client:
        yield client


@pytest.fixture
def services(small: Settings) -> Iterator[Services]:
    """A worker's view with the same limit (its recovery passes advance sweeps)."""
    built = Services.connect(small)
    yield built
    built.close()


def test_a_space_whose_trials_could_not_fit_a_worker_is_refused(client: TestClient) -> None:
    too_big = {
        "base": {"dtype": "float64", "minibatches": 1, "train_size": 60000},
        "space": {"n_hidden": {"choices": [50, 1024]}, "eta": {"low": 0.01, "high": 0.1}},
        "trials": 4,
    }
    refused = client.post("/sweeps", json=too_big)
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert ["body", "space", "n_hidden"] in [e["loc"] for e in detail]
    assert "JOB_MEMORY_LIMIT_MB" in detail[0]["msg"]
    # the same job alone is refused by POST /jobs too: one rule
    alone = client.post("/jobs", json={**too_big["base"], "n_hidden": 1024})
    assert alone.status_code == 422 and "JOB_MEMORY_LIMIT_MB" in alone.text
    fits = {**too_big, "space": {"n_hidden": {"choices": [50, 100]}}}
    assert client.post("/sweeps", json=fits).status_code == 202


def test_trials_count_in_the_queue_limit_and_wait_for_room(
    limited: TestClient, services: Services
) -> None:
    first = limited.post("/sweeps", json=sweep(parallel=4))
    assert first.status_code == 202
    second = limited.post("/sweeps", json=sweep(parallel=4))
    assert second.status_code == 202  # room for two trials: they start, the next waits
    assert services.jobs.queued_count() == LIMIT
    waiting = services.sweeps.store.get(second.json()["id"])
    assert waiting is not None and waiting.waiting == [2] and len(waiting.trials) == 2
    job = limited.post("/jobs", json={"epochs": 1})
    assert job.status_code == 429  # the trials fill the queue like any job
    third = limited.post("/sweeps", json=sweep(parallel=2))
    assert third.status_code == 429 and third.headers["Retry-After"]
    # a trial ends: room for one more, and the waiting trial takes it at the next step
    started = [t for t in waiting.trials if t.job_id is not None]
    services.jobs.finish(started[0].job_id, JobStatus.cancelled)  # type: ignore[arg-type]
    services.sweeps.advance(waiting.id)
    after = services.sweeps.store.get(waiting.id)
    assert after is not None and len(after.trials) == 3  # trial 2 took the room
    assert after.waiting == [3]  # and the next one waits in turn
    assert services.jobs.queued_count() == LIMIT  # full again, never past it


def test_fifty_sweeps_never_fill_the_queue_past_its_limit(
    limited: TestClient, services: Services
) -> None:
    answers = [limited.post("/sweeps", json=sweep(parallel=4)).status_code for _ in range(50)]
    assert answers.count(202) >= 2 and set(answers) <= {202, 429}
    assert services.jobs.queued_count() <= LIMIT
    for sweep_id in services.sweeps.store.active_ids():
        services.sweeps.advance(sweep_id)  # recovery passes: still nothing past the limit
    assert services.jobs.queued_count() <= LIMIT
