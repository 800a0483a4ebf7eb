"""Orphan recovery and checkpoints, over real Redis, without processes."""

import uuid
from pathlib import Path

import numpy as np

from shared import training
from shared.config import Settings
from shared.registry import Registry
from shared.schemas import Job, JobStatus, TrainParams
from shared.store import ModelStore
from worker.jobs import recover_orphans


def running_job(registry: Registry, attempts: int) -> uuid.UUID:
    job = Job(id=uuid.uuid4(), params=TrainParams(epochs=5), epochs=5)
    registry.create_job(job)
    registry.update_job(
        job.id, lambda j: j.model_copy(update={"status": JobStatus.running, "attempts": attempts})
    )
    return job.id


def test_orphans_are_requeued_once_and_held_jobs_left_alone(
    registry: Registry, tmp_path: Path
) -> None:
    settings = Settings(model_dir=tmp_path, max_attempts=3)
    orphan, held = running_job(registry, 1), running_job(registry, 1)
    registry.acquire_lease(held, "someone", 10)
    sent: list[uuid.UUID] = []
    assert recover_orphans(registry, settings, sent.append) == [orphan]
    assert recover_orphans(registry, settings, sent.append) == []  # already queued
    assert sent == [orphan]
    assert registry.get_job(orphan).status is JobStatus.queued  # type: ignore[union-attr]
    assert registry.get_job(held).status is JobStatus.running  # type: ignore[union-attr]


def test_orphan_past_the_attempt_cap_fails_as_worker_lost(
    registry: Registry, tmp_path: Path
) -> None:
    settings = Settings(model_dir=tmp_path, max_attempts=3)
    job_id = running_job(registry, 3)
    sent: list[uuid.UUID] = []
    recover_orphans(registry, settings, sent.append)
    job = registry.get_job(job_id)
    assert sent == [] and job is not None
    assert job.status is JobStatus.failed and "worker lost" in (job.error or "")
    assert registry.active_jobs() == []


def test_lease_is_exclusive_and_only_its_holder_renews_or_releases(registry: Registry) -> None:
    job_id = uuid.uuid4()
    assert registry.acquire_lease(job_id, "a", 5)
    assert not registry.acquire_lease(job_id, "b", 5)
    assert not registry.renew_lease(job_id, "b", 5)
    assert registry.renew_lease(job_id, "a", 5)
    registry.release_lease(job_id, "b")
    assert registry.lease_holder(job_id) == "a"
    registry.release_lease(job_id, "a")
    assert registry.lease_holder(job_id) is None


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
