"""A run that diverges, and records that cannot be read back (issue 17, point 1): no
non-finite number enters a record, and a record that fails to read never takes down a
list, a metric or a sweep."""

import uuid

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from shared.schemas.jobs import EpochRecord, JobEnd, JobStatus
from shared.schemas.params import TrainParams
from shared.services import Services
from shared.sweeps.sweeper import trial_job_id
from tests.unit.test_jobs import submit
from tests.unit.test_sweeps import one_choice
from worker.run import run_job

DIVERGES = TrainParams(epochs=3, train_size=1000, minibatches=10, eta=10, alpha=0.99, l2=10)
"""In-range settings whose cost overflows in the first epoch."""


def test_a_diverging_run_fails_cleanly_and_every_reader_still_reads(
    client: TestClient, services: Services, mnist_data: object
) -> None:
    job_id = submit(services.jobs, DIVERGES)
    assert run_job(job_id, services) is JobStatus.failed
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed" and "diverged in epoch 1" in job["error"]
    assert job["history"] == [] and job["model_id"] is None
    assert client.get("/jobs").status_code == 200
    assert client.get("/metrics").status_code == 200
    events = client.get(f"/jobs/{job_id}/events").text
    assert "event: end" in events and '"status":"failed"' in events


def test_records_that_do_not_read_are_skipped_not_fatal(
    client: TestClient, services: Services
) -> None:
    """What an older version wrote (a NaN cost stored as null) or a damaged record."""
    keys, redis = services.keys, services.redis
    good = submit(services.jobs)
    nulls = submit(services.jobs)
    redis.rpush(keys.job_history(nulls), '{"epoch": 1, "cost": null, "seconds": 0.1, "eta": 0.1}')
    broken = uuid.uuid4()
    redis.set(keys.job(broken), '{"id": "not even a uuid"}')
    redis.zadd(keys.jobs(), {str(broken): 1.0})
    listed = client.get("/jobs")
    assert listed.status_code == 200
    assert {j["id"] for j in listed.json()["items"]} == {str(good), str(nulls)}
    assert client.get(f"/jobs/{nulls}").json()["history"] == []  # the bad row is skipped
    assert client.get(f"/jobs/{broken}").status_code == 404
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and 'mnist_jobs{status="queued"} 2.0' in metrics.text


def test_a_sweep_whose_trial_record_is_unreadable_still_ends(
    client: TestClient, services: Services
) -> None:
    sweep = services.sweeps.create(one_choice(trials=1, seed=1))
    job_id = trial_job_id(sweep.id, 0)
    services.jobs.finish(job_id, JobStatus.failed)
    services.redis.set(services.keys.job(job_id), "{not json")  # damaged after it ended
    services.sweeps.advance(sweep.id)
    public = client.get(f"/sweeps/{sweep.id}")
    assert public.status_code == 200 and public.json()["status"] == "failed"
    assert public.json()["trials"][0]["error"] == "job record lost"
    cancel = client.post(f"/sweeps/{sweep.id}/cancel")
    assert cancel.status_code == 409  # ended: a clear answer, not a 500
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_no_record_takes_a_non_finite_number(bad: float) -> None:
    with pytest.raises(ValidationError):
        EpochRecord(epoch=1, cost=bad, seconds=0.1, eta=0.1)
    with pytest.raises(ValidationError):
        EpochRecord(epoch=1, cost=1.0, seconds=0.1, eta=0.1, val_accuracy=bad)
    with pytest.raises(ValidationError):
        JobEnd(test_accuracy=bad)
