"""Training jobs: submit, follow, list, cancel."""

import hashlib
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.deps import PageDep, QueueDep, RegistryDep, SettingsDep, require_api_key
from api.errors import BODY_ERRORS, REDIS_DOWN
from api.metrics import count_rejected
from shared import job_memory
from shared.queue import TRAIN_TASK
from shared.registry import JobNotFound
from shared.schemas import (
    ErrorBody,
    Job,
    JobAccepted,
    JobList,
    JobPublic,
    JobStatus,
    Preset,
    TrainParams,
    with_preset,
)

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=REDIS_DOWN)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No job with this id."}
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    dependencies=[Depends(require_api_key)],
    responses={
        **BODY_ERRORS,
        401: {"model": ErrorBody, "description": "API_KEY is set and was not given."},
        409: {"model": ErrorBody, "description": "Idempotency-Key reused with another body."},
        429: {"model": ErrorBody, "description": "Too many queued jobs."},
        503: {"model": ErrorBody, "description": "Redis or the broker is unreachable."},
    },
)
def submit_job(
    registry: RegistryDep,
    queue: QueueDep,
    settings: SettingsDep,
    response: Response,
    params: Annotated[TrainParams | None, Body()] = None,
    preset: Annotated[
        Preset | None,
        Query(description="Start from named settings: `book` (the defaults) or `fast`."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="Retrying with the same key returns the same job."),
    ] = None,
) -> JobAccepted:
    """Queue a training job; every hyper-parameter is optional (defaults: the book's run)."""
    try:
        params = with_preset(preset, params)
    except ValidationError as exc:  # the preset and the body together can clash
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None
    if too_big := job_memory.too_big(params, settings.job_memory_limit_mb):
        count_rejected("job_memory")
        raise RequestValidationError(too_big)
    job = Job(id=uuid4(), params=params, epochs=params.epochs)
    if idempotency_key is not None:
        fingerprint = hashlib.sha256(params.model_dump_json().encode()).hexdigest()
        first, first_id = registry.remember_idempotency(idempotency_key, fingerprint, job.id)
        if first_id != job.id:
            if first != fingerprint:
                raise HTTPException(409, "Idempotency-Key already used with a different body")
            original = registry.get_job(first_id)
            if original is not None:
                response.headers["Location"] = f"/jobs/{first_id}"
                return JobAccepted(id=first_id, status=original.status)
    queued = sum(j.status is JobStatus.queued for j in registry.active_jobs())
    if queued >= settings.max_queued_jobs:
        count_rejected("queue")
        if idempotency_key is not None:
            registry.forget_idempotency(idempotency_key)
        raise HTTPException(
            429, f"{queued} jobs are queued already; try later", headers={"Retry-After": "30"}
        )
    registry.create_job(job)
    try:
        queue.send_task(TRAIN_TASK, args=[str(job.id)], task_id=str(job.id))
    except Exception as exc:
        registry.finish_job(job.id, JobStatus.failed, error=f"could not queue: {exc}")
        raise HTTPException(503, "could not queue the job: broker unreachable") from exc
    response.headers["Location"] = f"/jobs/{job.id}"
    return JobAccepted(id=job.id, status=job.status)


@router.get("", response_model=JobList)
def list_jobs(registry: RegistryDep, page: PageDep) -> JobList:
    """Jobs, newest first (history left out: see ``GET /jobs/{id}``)."""
    items, total = registry.list_jobs(page.offset, page.limit)
    return JobList(items=items, total=total, offset=page.offset, limit=page.limit)


@router.get("/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
def get_job(job_id: UUID, registry: RegistryDep) -> JobPublic:
    """Status, progress (``epoch`` of ``epochs``), per-epoch history and results."""
    job = registry.get_job_public(job_id)
    if job is None:
        raise HTTPException(404, f"job {job_id} not found")
    return job


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Job,
    dependencies=[Depends(require_api_key)],
    responses={
        **NOT_FOUND,
        401: {"model": ErrorBody, "description": "API_KEY is set and was not given."},
        409: {"model": ErrorBody, "description": "The job already ended."},
    },
)
def cancel_job(job_id: UUID, registry: RegistryDep) -> Job:
    """A queued job never runs; a running one stops at its next epoch boundary."""
    job = registry.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"job {job_id} not found")
    if job.status.finished:
        raise HTTPException(409, f"job {job_id} already {job.status.value}")
    try:
        return registry.request_cancel(job_id)
    except JobNotFound:
        raise HTTPException(404, f"job {job_id} not found") from None
