"""``GET /jobs/{id}/events``: a job's progress as Server-Sent Events.

The worker writes the job record and one history row per epoch to Redis
(shared/jobs/store.py); this stream polls them at a short interval and sends

- ``status``: the job record (no history) first and whenever its status changes;
- ``epoch``: one per finished epoch, a history row plus ``epochs`` (the total),
  with the epoch number as the event ``id``;
- ``end``: the final job record once it succeeded, failed or was cancelled;
  then the stream closes.

A job that already ended replays its history and then ``end``. A client that
reconnects with ``Last-Event-ID: N`` gets epochs after N only. The polling itself is
api/sse.py's.
"""

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, HTTPException
from sse_starlette import EventSourceResponse

from api import metrics
from api.deps import JobsDep
from api.errors import errors
from api.sse import Event, documented, follow
from shared.jobs.store import JobStore
from shared.schemas.jobs import EpochRecord, Job, JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"])

POLL_SECONDS = 0.2
"""How often a stream reads the job record while the job is queued or running."""
PING_SECONDS = 15
"""Comment lines that keep idle connections (proxies, load balancers) open."""

EXAMPLE = """event: status
data: {"id": "…", "status": "running", "epoch": 0, "epochs": 3, …}

id: 1
event: epoch
data: {"epoch": 1, "cost": 0.93, "seconds": 0.05, "eta": 0.01, "val_accuracy": null, "epochs": 3}

event: end
data: {"id": "…", "status": "succeeded", "model_id": "…", "test_accuracy": 0.71, …}
"""


LAST_EVENT_ID = re.compile(r"[0-9]{1,9}")
"""A ``Last-Event-ID`` this stream can have sent: an epoch number in plain ASCII digits.

``str.isdigit``/``int`` would also take ``²`` (Latin-1 byte 0xB2, which ``int`` then
refuses), thousands of digits (``int`` refuses those too) and numbers beyond what a Redis
list index holds; nine digits are far above any job's epochs."""


def resume_after(last_event_id: str | None, epochs: int) -> int:
    """The epoch a reconnecting client saw last, or 0 (from the start) for anything else.

    Only ids this stream sends count: 1 to the job's ``epochs``, in ASCII digits.
    """
    if last_event_id is None or not LAST_EVENT_ID.fullmatch(last_event_id):
        return 0
    after = int(last_event_id)
    return after if after <= epochs else 0


def _job_event(event: str, job: Job) -> Event:
    return {"event": event, "data": job.model_dump_json()}


class JobProgress:
    """A job's record and new history rows, as :func:`api.sse.follow` reads them."""

    def __init__(self, jobs: JobStore, job_id: UUID, after: int = 0) -> None:
        self.jobs, self.job_id, self.sent = jobs, job_id, after
        self.name = f"job {job_id}"
        self.status: JobStatus | None = None

    def read(self) -> tuple[Job, list[EpochRecord]] | None:
        job, rows = self.jobs.progress(self.job_id, self.sent)
        return (job, rows) if job is not None else None

    def events(self, snapshot: tuple[Job, list[EpochRecord]]) -> tuple[list[Event], bool]:
        job, rows = snapshot
        events = []
        if job.status != self.status:
            self.status = job.status
            if not job.status.finished:
                events.append(_job_event("status", job))
        for row in rows:
            if row.epoch > self.sent:  # rows a resumed run re-trains were already sent
                self.sent = row.epoch
                data: dict[str, Any] = {**row.model_dump(mode="json"), "epochs": job.epochs}
                events.append({"event": "epoch", "id": str(row.epoch), "data": json.dumps(data)})
        if job.status.finished:
            events.append(_job_event("end", job))
        return events, job.status.finished


def job_events(
    jobs: JobStore, job_id: UUID, after: int = 0, poll: float = POLL_SECONDS
) -> AsyncIterator[Event]:
    """Events of one job until it ends (see the module docstring)."""
    return follow(JobProgress(jobs, job_id, after), poll)


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses=errors(
        documented("An event stream: `status`, one `epoch` per finished epoch, `end`.", EXAMPLE),
        {404: "No job with this id."},
    ),
)
async def stream_job_events(
    job_id: UUID,
    jobs: JobsDep,
    last_event_id: Annotated[
        str | None,
        Header(description="Resume after this epoch (browsers send it when they reconnect)."),
    ] = None,
) -> EventSourceResponse:
    """Follow a job live: each finished epoch's history row, then the final state.

    Works for a job that already ended too (its history, then ``end``).
    """
    job, _ = await asyncio.to_thread(jobs.progress, job_id, 0)
    if job is None:
        raise HTTPException(404, f"job {job_id} not found")
    after = resume_after(last_event_id, job.epochs)
    stream = _counted(job_events(jobs, job_id, after), metrics.current())
    return EventSourceResponse(stream, ping=PING_SECONDS)


async def _counted(
    events: AsyncIterator[dict[str, str]], app_metrics: metrics.Metrics | None
) -> AsyncIterator[dict[str, str]]:
    """The stream, counted in ``mnist_event_streams`` while it is open."""
    if app_metrics is None:
        async for event in events:
            yield event
        return
    app_metrics.event_streams.inc()
    try:
        async for event in events:
            yield event
    finally:
        app_metrics.event_streams.dec()
