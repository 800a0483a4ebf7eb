"""Hyper-parameter sweeps: submit, list, follow (also as Server-Sent Events), cancel.

The logic is in shared/sweeps.py; these routes translate it to HTTP.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from sse_starlette import EventSourceResponse

from api.deps import PageDep, SweepsDep, keyed
from api.errors import BODY_ERRORS, REDIS_DOWN, errors, found, http_errors
from api.metrics import count_rejected
from api.sse import Event, documented, follow
from shared.jobs.records import QueueFull
from shared.schemas.params import Preset
from shared.schemas.sweeps import (
    SweepAccepted,
    SweepList,
    SweepPublic,
    SweepRequest,
    SweepStatus,
    TrialRecord,
    TrialState,
)
from shared.sweeps.request import SweepInvalid
from shared.sweeps.store import SweepEnded, SweepNotFound
from shared.sweeps.sweeper import Sweeper

log = logging.getLogger(__name__)

router = APIRouter(prefix="/sweeps", tags=["sweeps"], responses=REDIS_DOWN)

POLL_SECONDS = 0.5
"""How often an event stream reads the sweep while it runs."""
PING_SECONDS = 15

NOT_FOUND = errors({404: "No sweep with this id."})
EXAMPLE = """event: status
data: {"id": "…", "status": "running", "trials": [...], …}

event: trial_start
data: {"number": 0, "params": {"eta": 0.01}, "state": "running", "job_id": "…", …}

event: trial_end
data: {"number": 0, "state": "complete", "value": 0.91, "model_id": "…", …}

event: end
data: {"id": "…", "status": "succeeded", "best": {"number": 0, "value": 0.91, …}, …}
"""


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepAccepted,
    **keyed(BODY_ERRORS, {429: "Too many queued jobs."}),
)
def submit_sweep(
    sweeps: SweepsDep,
    response: Response,
    body: Annotated[SweepRequest, Body()],
    preset: Annotated[
        Preset | None,
        Query(description="`base` starts from these settings: `book` (the defaults) or `fast`."),
    ] = None,
) -> SweepAccepted:
    """Search hyper-parameters: ``trials`` training jobs, at most ``parallel`` at a time,
    chosen by Optuna to maximise validation accuracy (the test set never chooses).

    ``base`` holds what every trial shares (as ``POST /jobs`` takes it;
    ``validation_fraction`` defaults to 0.1 and must be > 0), ``space`` what is
    searched: ``{"field": {"low", "high", "log"}}`` or ``{"field": {"choices": [...]}}``.
    """
    try:
        sweep = sweeps.create(body, preset)
    except SweepInvalid as exc:
        raise RequestValidationError(exc.errors) from None
    except QueueFull as exc:
        count_rejected("queue")
        raise HTTPException(429, str(exc), headers={"Retry-After": "30"}) from None
    response.headers["Location"] = f"/sweeps/{sweep.id}"
    return SweepAccepted(id=sweep.id, status=sweep.status)


@router.get("", response_model=SweepList)
def list_sweeps(sweeps: SweepsDep, page: PageDep) -> SweepList:
    """Sweeps, newest first."""
    items, total = sweeps.store.list_sweeps(page.offset, page.limit)
    return SweepList(
        items=[sweeps.view(s) for s in items], total=total, offset=page.offset, limit=page.limit
    )


@router.get("/{sweep_id}", response_model=SweepPublic, responses=NOT_FOUND)
def get_sweep(sweep_id: UUID, sweeps: SweepsDep) -> SweepPublic:
    """Status, every trial (number, params, state, value, job, model), the best trial,
    counts by state and wall time."""
    return sweeps.view(found(sweeps.store.get(sweep_id), f"sweep {sweep_id} not found"))


@router.post(
    "/{sweep_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepPublic,
    **keyed(NOT_FOUND, {409: "The sweep has ended."}),
)
def cancel_sweep(sweep_id: UUID, sweeps: SweepsDep) -> SweepPublic:
    """No new trial starts; queued trials are cancelled at once, running ones at their
    next epoch boundary; then the sweep ends ``cancelled``."""
    with http_errors({SweepNotFound: (404, f"sweep {sweep_id} not found"), SweepEnded: 409}):
        return sweeps.view(sweeps.cancel(sweep_id))


def _trial_event(event: str, trial: TrialRecord) -> Event:
    return {"event": event, "data": trial.model_dump_json()}


class SweepProgress:
    """A sweep as :func:`api.sse.follow` reads it: ``status`` first and on every status
    change, ``trial_start`` when a trial starts running, ``trial_end`` when it ends,
    then ``end`` with the sweep once it has ended (and its promotion gate ran). A trial
    that ended between two reads without being seen running gets its ``trial_start``
    first if it trained at all."""

    def __init__(self, sweeps: Sweeper, sweep_id: UUID) -> None:
        self.sweeps, self.sweep_id = sweeps, sweep_id
        self.name = f"sweep {sweep_id}"
        self.started: set[int] = set()
        self.ended: set[int] = set()
        self.status: SweepStatus | None = None

    def read(self) -> SweepPublic | None:
        sweep = self.sweeps.store.get(self.sweep_id)
        return self.sweeps.view(sweep) if sweep else None

    def events(self, public: SweepPublic) -> tuple[list[Event], bool]:
        events = []
        if public.status != self.status:
            self.status = public.status
            if not public.status.finished:
                events.append({"event": "status", "data": public.model_dump_json()})
        for trial in public.trials:
            ran = trial.state is TrialState.running or trial.epochs_run > 0
            if trial.number not in self.started and ran:
                self.started.add(trial.number)
                events.append(_trial_event("trial_start", trial))
            if trial.number not in self.ended and trial.state.finished:
                self.ended.add(trial.number)
                events.append(_trial_event("trial_end", trial))
        done = public.status.finished and public.settled
        if done:
            events.append({"event": "end", "data": public.model_dump_json()})
        return events, done


def sweep_events(
    sweeps: Sweeper, sweep_id: UUID, poll: float = POLL_SECONDS
) -> AsyncIterator[Event]:
    return follow(SweepProgress(sweeps, sweep_id), poll)


@router.get(
    "/{sweep_id}/events",
    response_class=EventSourceResponse,
    responses=errors(
        documented("An event stream: `status`, `trial_start`, `trial_end`, `end`.", EXAMPLE),
        NOT_FOUND,
    ),
)
async def stream_sweep_events(sweep_id: UUID, sweeps: SweepsDep) -> EventSourceResponse:
    """Follow a sweep live: its trials' starts and ends, then its final state."""
    found(await asyncio.to_thread(sweeps.store.get, sweep_id), f"sweep {sweep_id} not found")
    return EventSourceResponse(sweep_events(sweeps, sweep_id), ping=PING_SECONDS)
