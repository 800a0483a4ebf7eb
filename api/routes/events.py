"""``GET /jobs/{id}/events``: a job's progress as Server-Sent Events.

The worker writes the job record and one history row per epoch to Redis
(shared/jobstore.py); this stream polls them at a short interval and sends

- ``status``: the job record (no history) first and whenever its status changes;
- ``epoch``: one per finished epoch, a history row plus ``epochs`` (the total),
  with the epoch number as the event ``id``;
- ``end``: the final job record once it succeeded, failed or was cancelled;
  then the stream closes.

A job that already ended replays its history and then ``end``. A client that
reconnects with ``Last-Event-ID: N`` gets epochs after N only. Redis is read
with the sync client in a worker thread (``asyncio.to_thread``), so the event
loop never blocks; sse-starlette cancels the generator when the client goes.
"""

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

import redis
from fastapi import APIRouter, Header, HTTPException
from sse_starlette import EventSourceResponse

from api import metrics
from api.deps import JobsDep
from shared.jobstore import JobStore
from shared.schemas import ErrorBody, Job

log = logging.getLogger(__name__)

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


def _job_event(event: str, job: Job) -> dict[str, str]:
    return {"event": event, "data": job.model_dump_json()}


async def job_events(
    jobs: JobStore, job_id: UUID, after: int = 0, poll: float = POLL_SECONDS
) -> AsyncIterator[dict[str, str]]:
    """Events of one job until it ends (see the module docstring)."""
    sent, status = after, None
    while True:
        try:
            job, rows = await asyncio.to_thread(jobs.progress, job_id, sent)
        except redis.RedisError as exc:
            log.warning("events of job %s: redis error: %s", job_id, exc)
            detail = "the job store (Redis) is unavailable; reconnect to resume"
            yield {"event": "error", "data": json.dumps({"detail": detail})}
            return
        if job is None:
            yield {"event": "error", "data": json.dumps({"detail": f"job {job_id} is gone"})}
            return
        if job.status != status:
            status = job.status
            if not status.finished:
                yield _job_event("status", job)
        for row in rows:
            if row.epoch > sent:  # rows a resumed run re-trains were already sent
                sent = row.epoch
                data: dict[str, Any] = {**row.model_dump(mode="json"), "epochs": job.epochs}
                yield {"event": "epoch", "id": str(row.epoch), "data": json.dumps(data)}
        if job.status.finished:
            yield _job_event("end", job)
            return
        await asyncio.sleep(poll)


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "An event stream: `status`, one `epoch` per finished epoch, `end`.",
            "content": {"text/event-stream": {"example": EXAMPLE}},
        },
        404: {"model": ErrorBody, "description": "No job with this id."},
    },
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
