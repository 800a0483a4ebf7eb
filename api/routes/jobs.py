"""Training jobs: submit, follow, list, cancel."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Header, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError

from api.deps import JobsDep, PageDep, SubmitDep, keyed
from api.errors import BODY_ERRORS, REDIS_DOWN, errors, found, http_errors
from api.metrics import count_rejected
from shared.jobs.queue import QueueUnavailable
from shared.jobs.records import JobEnded, JobNotFound, QueueFull, TooLateToCancel
from shared.schemas.jobs import Job, JobAccepted, JobList, JobPublic, JobRequest
from shared.schemas.params import Preset
from shared.submission import Invalid, KeyReused, TooBig

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=REDIS_DOWN)

NOT_FOUND = errors({404: "No job with this id."})


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    **keyed(
        BODY_ERRORS,
        {
            409: "Idempotency-Key reused with another body.",
            429: "Too many queued jobs.",
            503: "Redis or the broker is unreachable.",
        },
    ),
)
def submit_job(
    submit: SubmitDep,
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
    try:
        accepted = submit.submit(body, preset, idempotency_key)
    except TooBig as exc:
        count_rejected("job_memory")
        raise RequestValidationError(exc.errors) from None
    except Invalid as exc:
        raise RequestValidationError(exc.errors) from None
    except QueueFull as exc:
        count_rejected("queue")
        raise HTTPException(429, str(exc), headers={"Retry-After": "30"}) from None
    except KeyReused as exc:
        raise HTTPException(409, str(exc)) from None
    except QueueUnavailable as exc:
        raise HTTPException(503, "could not queue the job: broker unreachable") from exc
    response.headers["Location"] = f"/jobs/{accepted.job_id}"
    return JobAccepted(id=accepted.job_id, status=accepted.status)


@router.get("", response_model=JobList)
def list_jobs(jobs: JobsDep, page: PageDep) -> JobList:
    """Jobs, newest first (history left out: see ``GET /jobs/{id}``)."""
    return page.listing(JobList, jobs.list_jobs)


@router.get("/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
def get_job(job_id: UUID, jobs: JobsDep) -> JobPublic:
    """Status, progress (``epoch`` of ``epochs``), per-epoch history and results."""
    return found(jobs.get_public(job_id), f"job {job_id} not found")


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Job,
    **keyed(NOT_FOUND, {409: "The job ended, or is saving its model."}),
)
def cancel_job(job_id: UUID, jobs: JobsDep) -> Job:
    """A queued job never runs; a running one stops at its next epoch boundary, and
    ends ``cancelled`` with no model. Once it is saving its model it is too late: 409."""
    with http_errors(
        {JobNotFound: (404, f"job {job_id} not found"), (JobEnded, TooLateToCancel): 409}
    ):
        return jobs.request_cancel(job_id)
