"""The event generator behind ``GET /jobs/{id}/events``, over a real Redis."""

import asyncio
import json
import uuid

from api.routes.events import job_events
from shared.jobs.store import JobStore
from shared.redisdb.keys import Keys
from shared.schemas.jobs import EpochRecord, Job, JobEnd, JobStatus
from shared.schemas.params import TrainParams


def _row(epoch: int, cost: float = 1.0) -> EpochRecord:
    return EpochRecord(epoch=epoch, cost=cost, seconds=0.01, eta=0.01)


def _create(jobs: JobStore, job: Job) -> None:
    assert jobs.create(job, max_queued=100).created


def _running_job(jobs: JobStore, epochs: int) -> uuid.UUID:
    job = Job(id=uuid.uuid4(), params=TrainParams(epochs=epochs), epochs=epochs)
    _create(jobs, job)
    jobs.update(job.id, lambda j: j.model_copy(update={"status": JobStatus.running}))
    return job.id


def test_resumed_run_sends_each_epoch_once(jobs: JobStore) -> None:
    """A worker that resumes from a checkpoint rewrites rows already sent: not resent."""
    job_id = _running_job(jobs, 5)
    for epoch in range(1, 5):
        jobs.record_epoch(job_id, _row(epoch))

    async def follow() -> tuple[list[dict], list[dict]]:
        stream = job_events(jobs, job_id, poll=0.01)
        first = [await anext(stream) for _ in range(5)]
        jobs.reset_progress(job_id, 2)  # resumed from a checkpoint at epoch 2
        for epoch in (3, 4, 5):
            jobs.record_epoch(job_id, _row(epoch, cost=0.5))
        jobs.finish(job_id, JobStatus.succeeded, JobEnd(model_id=job_id))
        return first, [event async for event in stream]

    first, rest = asyncio.run(follow())
    assert [e["event"] for e in first] == ["status", "epoch", "epoch", "epoch", "epoch"]
    assert [e["id"] for e in first[1:]] == ["1", "2", "3", "4"]
    assert [(e["event"], e.get("id")) for e in rest] == [("epoch", "5"), ("end", None)]
    assert json.loads(rest[0]["data"]) == {
        **_row(5, 0.5).model_dump(mode="json"),
        "epochs": 5,
    }
    assert json.loads(rest[1]["data"])["status"] == "succeeded"


def test_status_changes_are_events(jobs: JobStore) -> None:
    job = Job(id=uuid.uuid4(), params=TrainParams(epochs=1), epochs=1)
    _create(jobs, job)

    async def follow() -> list[dict]:
        stream = job_events(jobs, job.id, poll=0.01)
        seen = [await anext(stream)]
        jobs.update(job.id, lambda j: j.model_copy(update={"status": JobStatus.running}))
        seen.append(await anext(stream))
        jobs.request_cancel(job.id)  # running: the worker would stop it; here we end it
        jobs.finish(job.id, JobStatus.cancelled, only_from=(JobStatus.running,))
        return seen + [event async for event in stream]

    seen = asyncio.run(follow())
    statuses = [(e["event"], json.loads(e["data"])["status"]) for e in seen]
    assert statuses == [("status", "queued"), ("status", "running"), ("end", "cancelled")]


def test_a_job_that_disappears_ends_the_stream_with_an_error(jobs: JobStore, keys: Keys) -> None:
    job_id = _running_job(jobs, 3)

    async def follow() -> list[dict]:
        stream = job_events(jobs, job_id, poll=0.01)
        seen = [await anext(stream)]
        jobs.redis.delete(keys.job(job_id), keys.job_history(job_id))  # as if Redis lost it
        return seen + [event async for event in stream]

    seen = asyncio.run(follow())
    assert [e["event"] for e in seen] == ["status", "error"]
    assert "gone" in json.loads(seen[-1]["data"])["detail"]
