"""Orphan recovery and checkpoints, over real Redis, without processes."""

import uuid
from pathlib import Path

import numpy as np

from shared import training
from shared.config import Settings
from shared.jobstore import JobStore
from shared.schemas import Job, JobStatus, TrainParams
from shared.store import ModelStore
from worker.jobs import Stores, recover_orphans


def running_job(jobs: JobStore, attempts: int) -> uuid.UUID:
    job = Job(id=uuid.uuid4(), params=TrainParams(epochs=5), epochs=5)
    assert jobs.create(job, max_queued=100).created
    jobs.update(
        job.id, lambda j: j.model_copy(update={"status": JobStatus.running, "attempts": attempts})
    )
    return job.id


def test_orphans_are_requeued_once_and_held_jobs_left_alone(stores: Stores) -> None:
    settings = Settings(model_dir=stores.files.root, max_attempts=3)
    orphan, held = running_job(stores.jobs, 1), running_job(stores.jobs, 1)
    assert stores.leases.acquire(held, "someone", 10)
    sent: list[uuid.UUID] = []
    assert recover_orphans(stores, settings, sent.append) == [orphan]
    assert recover_orphans(stores, settings, sent.append) == []  # already queued
    assert sent == [orphan]
    assert stores.jobs.get(orphan).status is JobStatus.queued  # type: ignore[union-attr]
    assert stores.jobs.get(held).status is JobStatus.running  # type: ignore[union-attr]


def test_orphan_past_the_attempt_cap_fails_as_worker_lost(stores: Stores) -> None:
    settings = Settings(model_dir=stores.files.root, max_attempts=3)
    job_id = running_job(stores.jobs, 3)
    sent: list[uuid.UUID] = []
    recover_orphans(stores, settings, sent.append)
    job = stores.jobs.get(job_id)
    assert sent == [] and job is not None
    assert job.status is JobStatus.failed and "worker lost" in (job.error or "")
    assert stores.jobs.active() == []


def test_checkpoint_round_trip_resumes_identically(tmp_path: Path) -> None:
    """Stopping after 2 epochs and resuming from the file equals 4 epochs straight."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 784), dtype=np.uint8)
    y = rng.integers(0, 10, 300).astype(np.uint8)
    data = training.Dataset(x, y, x[:0], y[:0], x[:50], y[:50])
    params = TrainParams(epochs=4, minibatches=3, eta=0.001)
    straight = training.train(params, data)

    store = ModelStore(tmp_path)
    job_id = uuid.uuid4()
    half = training.train(params.model_copy(update={"epochs": 2}), data)
    store.save_checkpoint(job_id, half)
    resumed_state = store.load_checkpoint(job_id)
    assert resumed_state is not None and resumed_state.epoch == 2
    assert resumed_state.history == half.history
    resumed = training.train(params, data, state=resumed_state)
    for a, b in zip(straight.weights.arrays(), resumed.weights.arrays(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r.cost for r in resumed.history] == [r.cost for r in straight.history]
    store.remove_checkpoint(job_id)
    assert store.load_checkpoint(job_id) is None


def test_damaged_checkpoint_is_ignored(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    job_id = uuid.uuid4()
    store.checkpoint_path(job_id).parent.mkdir(parents=True)
    store.checkpoint_path(job_id).write_bytes(b"not a checkpoint")
    assert store.load_checkpoint(job_id) is None
