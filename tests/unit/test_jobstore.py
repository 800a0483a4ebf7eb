"""Job records against a real (private) redis-server."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.jobs.records import JobEnded, JobNotFound
from shared.jobs.store import JobStore
from shared.schemas.jobs import EpochRecord, Job, JobEnd, JobStatus
from shared.schemas.params import TrainParams

MAX_QUEUED = 100
"""Far above what any test here queues: the limit itself is not under test."""


def new_job(minutes_ago: int = 0) -> Job:
    created = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return Job(id=uuid.uuid4(), params=TrainParams(epochs=3), epochs=3, created_at=created)


def create(jobs: JobStore, job: Job) -> None:
    created = jobs.create(job, MAX_QUEUED)
    assert created.created and created.job_id == job.id


def test_job_round_trip_and_unknown_id(jobs: JobStore) -> None:
    job = new_job()
    create(jobs, job)
    assert jobs.get(job.id) == job
    assert jobs.get(uuid.uuid4()) is None
    assert jobs.get_public(uuid.uuid4()) is None


def test_jobs_listed_newest_first_with_pages(jobs: JobStore) -> None:
    created = [new_job(minutes_ago=m) for m in (3, 1, 2)]
    for job in created:
        create(jobs, job)
    page, total = jobs.list_jobs(0, 2)
    assert total == 3
    assert [j.id for j in page] == [created[1].id, created[2].id]
    rest, _ = jobs.list_jobs(2, 2)
    assert [j.id for j in rest] == [created[0].id]


def test_history_has_one_row_per_epoch_even_after_a_rerun(jobs: JobStore) -> None:
    job = new_job()
    create(jobs, job)
    for epoch in (1, 2, 3, 2, 3):  # a resumed run repeats epochs 2 and 3
        jobs.record_epoch(job.id, EpochRecord(epoch=epoch, cost=1.0, seconds=0.1, eta=0.1))
    public = jobs.get_public(job.id)
    assert public is not None
    assert [row.epoch for row in public.history] == [1, 2, 3]
    assert public.epoch == 3
    jobs.record_epoch(job.id, EpochRecord(epoch=1, cost=1.0, seconds=0.1, eta=0.1))
    public = jobs.get_public(job.id)
    assert public is not None and [row.epoch for row in public.history] == [1]


def test_update_is_atomic_read_modify_write(jobs: JobStore) -> None:
    job = new_job()
    create(jobs, job)

    def bump(j: Job) -> Job:
        j.attempts += 1
        return j

    for _ in range(5):
        jobs.update(job.id, bump)
    assert jobs.get(job.id).attempts == 5  # type: ignore[union-attr]
    with pytest.raises(JobNotFound):
        jobs.update(uuid.uuid4(), bump)


def test_cancel_queued_is_immediate_running_is_flagged(jobs: JobStore) -> None:
    queued, running = new_job(), new_job()
    for job in (queued, running):
        create(jobs, job)
    jobs.update(running.id, lambda j: j.model_copy(update={"status": JobStatus.running}))
    assert jobs.request_cancel(queued.id).status is JobStatus.cancelled
    assert jobs.request_cancel(running.id).status is JobStatus.running
    assert jobs.cancel_requested(running.id)
    assert not jobs.cancel_requested(uuid.uuid4())
    with pytest.raises(JobEnded, match="already cancelled"):
        jobs.request_cancel(queued.id)


def test_finish_sets_fields(jobs: JobStore) -> None:
    job = new_job()
    create(jobs, job)
    done = jobs.finish(job.id, JobStatus.failed, JobEnd(error="boom"))
    assert done.status is JobStatus.failed and done.error == "boom" and done.finished_at
    assert jobs.active() == []
