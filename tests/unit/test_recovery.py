"""Orphan recovery and checkpoints, over real Redis, without processes."""

import uuid

import numpy as np
import pytest

from shared.jobs.leases import Superseded
from shared.jobs.store import JobStore
from shared.ml import checkpoint, training
from shared.schemas.jobs import Job, JobStatus
from shared.schemas.params import TrainParams
from shared.services import Services
from worker.recovery import recover_orphans


def running_job(jobs: JobStore, attempts: int) -> uuid.UUID:
    job = Job(id=uuid.uuid4(), params=TrainParams(epochs=5), epochs=5)
    assert jobs.create(job, max_queued=100).created
    jobs.update(
        job.id, lambda j: j.model_copy(update={"status": JobStatus.running, "attempts": attempts})
    )
    return job.id


def test_orphans_are_requeued_once_and_held_jobs_left_alone(services: Services) -> None:
    orphan, held = running_job(services.jobs, 1), running_job(services.jobs, 1)
    assert services.leases.acquire(held, "someone", 10)
    sent: list[uuid.UUID] = []
    assert recover_orphans(services, sent.append) == [orphan]
    assert recover_orphans(services, sent.append) == []  # already queued
    assert sent == [orphan]
    assert services.jobs.get(orphan).status is JobStatus.queued  # type: ignore[union-attr]
    assert services.jobs.get(held).status is JobStatus.running  # type: ignore[union-attr]


def test_claiming_an_orphan_supersedes_its_last_holder(services: Services) -> None:
    """The holder whose lease lapsed may come back: once its job was claimed, its fence
    no longer holds, so it can write nothing more."""
    job_id = running_job(services.jobs, 1)
    fence = services.leases.acquire(job_id, "cut-off", 10)
    assert fence is not None
    services.leases.release(job_id, "cut-off")  # as if its lease had expired
    assert recover_orphans(services, lambda _: None) == [job_id]
    with pytest.raises(Superseded):
        services.jobs.reset_progress(job_id, 0, fence=fence)


def test_orphan_past_the_attempt_cap_fails_as_worker_lost(services: Services) -> None:
    job_id = running_job(services.jobs, services.settings.max_attempts)
    sent: list[uuid.UUID] = []
    recover_orphans(services, sent.append)
    job = services.jobs.get(job_id)
    assert sent == [] and job is not None
    assert job.status is JobStatus.failed and "worker lost" in (job.error or "")
    assert services.jobs.active() == []


def test_checkpoint_round_trip_resumes_identically(services: Services) -> None:
    """Stopping after 2 epochs and resuming from the store equals 4 epochs straight."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 784), dtype=np.uint8)
    y = rng.integers(0, 10, 300).astype(np.uint8)
    data = training.Dataset(x, y, x[:0], y[:0], x[:50], y[:50])
    params = TrainParams(epochs=4, minibatches=3, eta=0.001)
    straight = training.train(params, data)

    checkpoints = services.checkpoints
    job_id = running_job(services.jobs, 1)
    fence = services.leases.acquire(job_id, "me", 10)
    assert fence is not None
    half = training.train(params.model_copy(update={"epochs": 2}), data)
    checkpoints.save(job_id, half, fence)
    resumed_state = checkpoints.load(job_id)
    assert resumed_state is not None and resumed_state.epoch == 2
    assert resumed_state.history == half.history
    resumed = training.train(params, data, state=resumed_state)
    for a, b in zip(straight.weights.arrays(), resumed.weights.arrays(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r.cost for r in resumed.history] == [r.cost for r in straight.history]
    checkpoints.remove(job_id)
    assert checkpoints.load(job_id) is None
    assert services.artifacts.list("checkpoints/") == []


def test_damaged_or_altered_checkpoint_is_ignored(services: Services) -> None:
    job_id = running_job(services.jobs, 1)
    fence = services.leases.acquire(job_id, "me", 10)
    assert fence is not None
    state = training.init_state(TrainParams(n_hidden=3))
    services.checkpoints.save(job_id, state, fence)
    (key,) = services.artifacts.list("checkpoints/")
    services.artifacts.put(key, b"not a checkpoint")  # the sha256 on record catches it
    assert services.checkpoints.load(job_id) is None


def test_a_legacy_checkpoint_is_still_read(services: Services) -> None:
    """A job checkpointed by the version before this layout resumes from that file."""
    job_id = uuid.uuid4()
    state = training.init_state(TrainParams(n_hidden=3))
    state.epoch = 2
    services.artifacts.put(f"checkpoints/{job_id}.npz", checkpoint.dumps(state))
    loaded = services.checkpoints.load(job_id)
    assert loaded is not None and loaded.epoch == 2
