"""Job records and the model index against a real (private) redis-server."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from shared import mlp
from shared.registry import JobNotFound, ModelIndex, Registry
from shared.schemas import EpochRecord, Job, JobStatus, ModelInfo, TrainParams
from shared.store import ModelStore


def new_job(minutes_ago: int = 0) -> Job:
    created = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return Job(id=uuid.uuid4(), params=TrainParams(epochs=3), epochs=3, created_at=created)


def test_job_round_trip_and_unknown_id(registry: Registry) -> None:
    job = new_job()
    registry.create_job(job)
    assert registry.get_job(job.id) == job
    assert registry.get_job(uuid.uuid4()) is None
    assert registry.get_job_public(uuid.uuid4()) is None


def test_jobs_listed_newest_first_with_pages(registry: Registry) -> None:
    jobs = [new_job(minutes_ago=m) for m in (3, 1, 2)]
    for job in jobs:
        registry.create_job(job)
    page, total = registry.list_jobs(0, 2)
    assert total == 3
    assert [j.id for j in page] == [jobs[1].id, jobs[2].id]
    rest, _ = registry.list_jobs(2, 2)
    assert [j.id for j in rest] == [jobs[0].id]


def test_history_has_one_row_per_epoch_even_after_a_rerun(registry: Registry) -> None:
    job = new_job()
    registry.create_job(job)
    for epoch in (1, 2, 3, 2, 3):  # a resumed run repeats epochs 2 and 3
        registry.record_epoch(job.id, EpochRecord(epoch=epoch, cost=1.0, seconds=0.1, eta=0.1))
    public = registry.get_job_public(job.id)
    assert public is not None
    assert [row.epoch for row in public.history] == [1, 2, 3]
    assert public.epoch == 3
    registry.record_epoch(job.id, EpochRecord(epoch=1, cost=1.0, seconds=0.1, eta=0.1))
    public = registry.get_job_public(job.id)
    assert public is not None and [row.epoch for row in public.history] == [1]


def test_update_job_is_atomic_read_modify_write(registry: Registry) -> None:
    job = new_job()
    registry.create_job(job)

    def bump(j: Job) -> Job:
        j.attempts += 1
        return j

    for _ in range(5):
        registry.update_job(job.id, bump)
    assert registry.get_job(job.id).attempts == 5  # type: ignore[union-attr]
    with pytest.raises(JobNotFound):
        registry.update_job(uuid.uuid4(), bump)


def test_cancel_queued_is_immediate_running_is_flagged(registry: Registry) -> None:
    queued, running = new_job(), new_job()
    running.status = JobStatus.running
    for job in (queued, running):
        registry.create_job(job)
    assert registry.request_cancel(queued.id).status is JobStatus.cancelled
    assert registry.request_cancel(running.id).status is JobStatus.running
    assert registry.cancel_requested(running.id)
    assert not registry.cancel_requested(uuid.uuid4())


def test_finish_job_sets_fields(registry: Registry) -> None:
    job = new_job()
    registry.create_job(job)
    done = registry.finish_job(job.id, JobStatus.failed, error="boom")
    assert done.status is JobStatus.failed and done.error == "boom" and done.finished_at


def _model(store: ModelStore, minutes_ago: int) -> uuid.UUID:
    model_id = uuid.uuid4()
    created = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    weights = mlp.init_weights(784, 3, 10, np.random.default_rng(0), np.float32)
    meta = {
        "created_at": created.isoformat(),
        "job_id": str(model_id),
        "params": TrainParams().model_dump(mode="json"),
        "train_accuracy": 0.9,
        "test_accuracy": 0.8,
        "input_scale": 1.0,
    }
    store.save(model_id, weights, meta)
    return model_id


def newest_model(registry: Registry, redis_url: str) -> uuid.UUID | None:
    """The newest model as the API's ModelIndex reads it (not subscribed: from Redis)."""

    async def read() -> uuid.UUID | None:
        index = ModelIndex.from_url(redis_url, registry.prefix)
        try:
            return await index.latest_model_id()
        finally:
            await index.aclose()

    return asyncio.run(read())


def test_rebuild_models_from_files(registry: Registry, redis_url: str, tmp_path: Path) -> None:
    """Redis lost its data: the folder alone re-creates the index, newest first."""
    store = ModelStore(tmp_path)
    older, newer = _model(store, 10), _model(store, 1)
    broken = _model(store, 0)
    store.path(broken).write_bytes(b"garbage")
    assert registry.rebuild_models(store) == 2
    assert newest_model(registry, redis_url) == newer
    items, total = registry.list_models(0, 10)
    assert total == 2 and [m.id for m in items] == [newer, older]
    info = registry.get_model(older)
    assert isinstance(info, ModelInfo) and info.sha256 == store.recorded_sha256(older)
    assert registry.rebuild_models(store) == 0  # idempotent


def test_latest_model_none_when_empty(registry: Registry, redis_url: str) -> None:
    assert newest_model(registry, redis_url) is None
    assert registry.get_model(uuid.uuid4()) is None
