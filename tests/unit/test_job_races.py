"""Check-then-write steps of the job records are atomic (issue: races), against a
real redis-server with threads racing for real."""

import threading
import uuid
from collections.abc import Callable
from typing import Any

from shared.jobs.records import QueueFull, TooLateToCancel
from shared.jobs.store import JobStore
from shared.schemas.jobs import Job, JobStatus
from shared.schemas.params import TrainParams


def _job() -> Job:
    return Job(id=uuid.uuid4(), params=TrainParams(epochs=3), epochs=3)


def _race(n: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # collected, asserted on by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_one_job_per_idempotency_key_under_concurrency(jobs: JobStore) -> None:
    results = _race(20, lambda _: jobs.create(_job(), 100, ("key-1", "fingerprint")))
    created = [r for r in results if r.created]
    assert len(created) == 1
    assert {r.job_id for r in results} == {created[0].job_id}
    assert jobs.list_jobs(0, 100)[1] == 1


def test_queue_limit_holds_under_concurrency(jobs: JobStore) -> None:
    results = _race(40, lambda _: jobs.create(_job(), 10))
    assert sum(not isinstance(r, QueueFull) for r in results) == 10
    assert sum(j.status is JobStatus.queued for j in jobs.active()) == 10


def test_started_jobs_leave_the_queued_count(jobs: JobStore) -> None:
    first = _job()
    jobs.create(first, 1)
    jobs.update(first.id, lambda j: j.model_copy(update={"status": JobStatus.running}))
    jobs.create(_job(), 1)  # the running one no longer counts


def test_cancel_and_commit_have_exactly_one_winner(jobs: JobStore) -> None:
    for _ in range(30):
        job = _job()
        jobs.create(job, 100)
        jobs.update(job.id, lambda j: j.model_copy(update={"status": JobStatus.running}))

        def step(i: int, job_id: uuid.UUID = job.id) -> object:
            return jobs.commit(job_id) if i == 0 else jobs.request_cancel(job_id)

        committed, cancel = _race(2, step)
        record = jobs.get(job.id)
        assert record is not None
        if committed:
            assert isinstance(cancel, TooLateToCancel) and not record.cancel_requested
        else:
            assert isinstance(cancel, Job) and record.cancel_requested and not record.committed
