"""Training jobs: submit, follow, list, cancel."""

import hashlib
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api import finetune
from api.deps import JobsDep, PageDep, QueueDep, RegistryDep, SettingsDep, require_api_key
from api.errors import BODY_ERRORS, REDIS_DOWN
from api.metrics import count_rejected
from shared import job_memory
from shared.jobstore import JobEnded, JobNotFound, QueueFull, TooLateToCancel
from shared.queue import TRAIN_TASK
from shared.schemas import (
    ErrorBody,
    Job,
    JobAccepted,
    JobList,
    JobPublic,
    JobRequest,
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
    jobs: JobsDep,
    queue: QueueDep,
    settings: SettingsDep,
    registry: RegistryDep,
    response: Response,
    body: Annotated[JobRequest | None, Body()] = None,
    preset: Annotated[
        Preset | None,
        Query(description="Start from named settings: `book` (the defaults) or `fast`."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="Retrying with the same key returns the same job."),
    ] = None,
) -> JobAccepted:
    """Queue a training job; every hyper-parameter is optional (defaults: the book's run).

    Beside the hyper-parameters, ``promote`` asks for the promotion gate when it succeeds.
    """
    given, options = body.split() if body is not None else ({}, None)
    given, tuning = finetune.resolve(registry, given, options)  # init_model: the parent's
    try:
        params = with_preset(preset, TrainParams.model_validate(given))
    except ValidationError as exc:  # the preset and the body together can clash
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None
    if too_big := job_memory.too_big(params, settings.job_memory_limit_mb):
        count_rejected("job_memory")
        raise RequestValidationError(too_big)
    job = Job(
        id=uuid4(),
        params=params,
        epochs=params.epochs,
        promote=options.promote if options else None,
        early_stopping=options.early_stopping if options else None,
        **tuning,
    )
    idempotency = None
    if idempotency_key is not None:
        fingerprint = hashlib.sha256(
            f"{params.model_dump_json()} {job.promote and job.promote.model_dump_json()} "
            f"{sorted((k, str(v)) for k, v in tuning.items())}"
            # only when set, so that keys given before early stopping existed still match
            f"{f' {job.early_stopping.model_dump_json()}' if job.early_stopping else ''}".encode()
        ).hexdigest()
        idempotency = (idempotency_key, fingerprint)
    try:
        created = jobs.create(job, settings.max_queued_jobs, idempotency)
    except QueueFull as exc:
        count_rejected("queue")
        raise HTTPException(429, str(exc), headers={"Retry-After": "30"}) from None
    if not created.created:
        if idempotency is not None and created.fingerprint != idempotency[1]:
            raise HTTPException(409, "Idempotency-Key already used with a different body")
        original = jobs.get(created.job_id)
        response.headers["Location"] = f"/jobs/{created.job_id}"
        return JobAccepted(
            id=created.job_id, status=original.status if original else JobStatus.queued
        )
    try:
        queue.send_task(TRAIN_TASK, args=[str(job.id)], task_id=str(job.id))
    except Exception as exc:
        jobs.finish(job.id, JobStatus.failed, error="could not queue: broker unreachable")
        raise HTTPException(503, "could not queue the job: broker unreachable") from exc
    response.headers["Location"] = f"/jobs/{job.id}"
    return JobAccepted(id=job.id, status=job.status)


@router.get("", response_model=JobList)
def list_jobs(jobs: JobsDep, page: PageDep) -> JobList:
    """Jobs, newest first (history left out: see ``GET /jobs/{id}``)."""
    items, total = jobs.list_jobs(page.offset, page.limit)
    return JobList(items=items, total=total, offset=page.offset, limit=page.limit)


@router.get("/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
def get_job(job_id: UUID, jobs: JobsDep) -> JobPublic:
    """Status, progress (``epoch`` of ``epochs``), per-epoch history and results."""
    job = jobs.get_public(job_id)
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
        409: {"model": ErrorBody, "description": "The job ended, or is saving its model."},
    },
)
def cancel_job(job_id: UUID, jobs: JobsDep) -> Job:
    """A queued job never runs; a running one stops at its next epoch boundary, and
    ends ``cancelled`` with no model. Once it is saving its model it is too late: 409."""
    try:
        return jobs.request_cancel(job_id)
    except JobNotFound:
        raise HTTPException(404, f"job {job_id} not found") from None
    except (JobEnded, TooLateToCancel) as exc:
        raise HTTPException(409, str(exc)) from None
