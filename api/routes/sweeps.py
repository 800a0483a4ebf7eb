"""Hyper-parameter sweeps: submit, list, follow (also as Server-Sent Events), cancel.

The logic is in shared/sweeps.py; these routes translate it to HTTP.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

import redis
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from sse_starlette import EventSourceResponse

from api.deps import PageDep, SweepsDep, require_api_key
from api.errors import BODY_ERRORS, REDIS_DOWN
from shared.schemas import ErrorBody, Preset
from shared.sweep_schemas import (
    SweepAccepted,
    SweepList,
    SweepPublic,
    SweepRequest,
    TrialRecord,
    TrialState,
)
from shared.sweeps import SweepEnded, Sweeper, SweepInvalid, SweepNotFound

log = logging.getLogger(__name__)

router = APIRouter(prefix="/sweeps", tags=["sweeps"], responses=REDIS_DOWN)

POLL_SECONDS = 0.5
"""How often an event stream reads the sweep while it runs."""
PING_SECONDS = 15

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No sweep with this id."}
}
NEEDS_KEY: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "API_KEY is set and was not given."}
}
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
    dependencies=[Depends(require_api_key)],
    responses={**BODY_ERRORS, **NEEDS_KEY},
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
    response.headers["Location"] = f"/sweeps/{sweep.id}"
    return SweepAccepted(id=sweep.id, status=sweep.status)


@router.get("", response_model=SweepList)
def list_sweeps(sweeps: SweepsDep, page: PageDep) -> SweepList:
    """Sweeps, newest first."""
    items, total = sweeps.store.list_sweeps(page.offset, page.limit)
    return SweepList(
        items=[sweeps.view(s) for s in items], total=total, offset=page.offset, limit=page.limit
    )


def _public(sweeps: Sweeper, sweep_id: UUID) -> SweepPublic:
    sweep = sweeps.store.get(sweep_id)
    if sweep is None:
        raise HTTPException(404, f"sweep {sweep_id} not found")
    return sweeps.view(sweep)


@router.get("/{sweep_id}", response_model=SweepPublic, responses=NOT_FOUND)
def get_sweep(sweep_id: UUID, sweeps: SweepsDep) -> SweepPublic:
    """Status, every trial (number, params, state, value, job, model), the best trial,
    counts by state and wall time."""
    return _public(sweeps, sweep_id)


@router.post(
    "/{sweep_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepPublic,
    dependencies=[Depends(require_api_key)],
    responses={
        **NOT_FOUND,
        **NEEDS_KEY,
        409: {"model": ErrorBody, "description": "The sweep has ended."},
    },
)
def cancel_sweep(sweep_id: UUID, sweeps: SweepsDep) -> SweepPublic:
    """No new trial starts; queued trials are cancelled at once, running ones at their
    next epoch boundary; then the sweep ends ``cancelled``."""
    try:
        sweep = sweeps.cancel(sweep_id)
    except SweepNotFound:
        raise HTTPException(404, f"sweep {sweep_id} not found") from None
    except SweepEnded as exc:
        raise HTTPException(409, str(exc)) from None
    return sweeps.view(sweep)


def _trial_event(event: str, trial: TrialRecord) -> dict[str, str]:
    return {"event": event, "data": trial.model_dump_json()}


async def sweep_events(
    sweeps: Sweeper, sweep_id: UUID, poll: float = POLL_SECONDS
) -> AsyncIterator[dict[str, str]]:
    """``status`` (the sweep) first and on every status change, ``trial_start`` when a
    trial starts running, ``trial_end`` when it ends, then ``end`` with the sweep once
    it has ended (and its promotion gate ran). A trial that ended between two reads
    without being seen running gets its ``trial_start`` first if it trained at all."""
    started: set[int] = set()
    ended: set[int] = set()
    status = None
    while True:
        try:
            sweep = await asyncio.to_thread(sweeps.store.get, sweep_id)
            public = await asyncio.to_thread(sweeps.view, sweep) if sweep else None
        except redis.RedisError as exc:
            log.warning("events of sweep %s: redis error: %s", sweep_id, exc)
            detail = "the job store (Redis) is unavailable; reconnect to resume"
            yield {"event": "error", "data": json.dumps({"detail": detail})}
            return
        if public is None:
            yield {"event": "error", "data": json.dumps({"detail": f"sweep {sweep_id} is gone"})}
            return
        if public.status != status:
            status = public.status
            if not status.finished:
                yield {"event": "status", "data": public.model_dump_json()}
        for trial in public.trials:
            ran = trial.state is TrialState.running or trial.epochs_run > 0
            if trial.number not in started and ran:
                started.add(trial.number)
                yield _trial_event("trial_start", trial)
            if trial.number not in ended and trial.state.finished:
                ended.add(trial.number)
                yield _trial_event("trial_end", trial)
        if public.status.finished and public.settled:
            yield {"event": "end", "data": public.model_dump_json()}
            return
        await asyncio.sleep(poll)


@router.get(
    "/{sweep_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "An event stream: `status`, `trial_start`, `trial_end`, `end`.",
            "content": {"text/event-stream": {"example": EXAMPLE}},
        },
        **NOT_FOUND,
    },
)
async def stream_sweep_events(sweep_id: UUID, sweeps: SweepsDep) -> EventSourceResponse:
    """Follow a sweep live: its trials' starts and ends, then its final state."""
    sweep = await asyncio.to_thread(sweeps.store.get, sweep_id)
    if sweep is None:
        raise HTTPException(404, f"sweep {sweep_id} not found")
    return EventSourceResponse(sweep_events(sweeps, sweep_id), ping=PING_SECONDS)
