"""Users' corrections: send one (pixels or a picture), list, read, count, delete.

The storage rules are in shared/feedback/corrections.py; a picture is prepared exactly as
``POST /predict/image`` prepares it (api/imaging.py), so what is kept is the 28x28
image the model saw.
"""

import io
import re
from collections.abc import Sequence
from typing import Annotated, Any
from uuid import UUID

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from PIL import Image
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile  # what request.form() makes

from api import imaging
from api.deps import (
    CorrectionsDep,
    JobsDep,
    ModelIndexDep,
    PageDep,
    TrafficDep,
    keyed,
    require_key_for_reads,
)
from api.errors import BODY_ERRORS, READ_KEY, REDIS_DOWN, errors, found, http_errors
from shared.feedback import finetune
from shared.feedback.corrections import Added, Corrections, StoreFull
from shared.schemas.feedback import (
    CorruptCorrection,
    FeedbackDetail,
    FeedbackFile,
    FeedbackItem,
    FeedbackList,
    FeedbackRequest,
    FeedbackStats,
    Source,
    make_file,
)

router = APIRouter(tags=["feedback"], responses=REDIS_DOWN)

JSON = "application/json"
MULTIPART = "multipart/form-data"
UNKNOWN = errors({404: "No such correction."})
DAMAGED = errors({503: "The correction's file fails its check."})
BODY = {
    "required": True,
    "content": {
        JSON: {"schema": FeedbackRequest.model_json_schema()},
        MULTIPART: {
            "schema": {
                "type": "object",
                "required": ["file", "label"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "label": {"type": "integer", "minimum": 0, "maximum": 9},
                    "model_id": {"type": "string", "format": "uuid"},
                    "predicted": {"type": "integer", "minimum": 0, "maximum": 9},
                },
            }
        },
    },
}


READERS = [Depends(require_key_for_reads)]
"""Users' drawings are theirs: reading them follows PROTECT_PREDICT."""
LABEL = re.compile(r"[0-9]{1,3}")
"""A form field that is a small whole number, in ASCII digits (not ``²``, not 5,000 digits)."""


def _invalid(errors: Sequence[Any]) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors])


def _from_json(body: bytes) -> FeedbackFile:
    try:
        request = FeedbackRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc.errors()) from None
    return make_file(
        np.asarray(request.pixels),
        request.label,
        Source.pixels,
        model_id=request.model_id,
        predicted=request.predicted,
    )


async def _from_form(request: Request) -> FeedbackFile:
    form = await request.form(max_files=1, max_fields=10)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _invalid([{"loc": ("file",), "msg": "Field required", "type": "missing"}])
    fields = {name: form.get(name) for name in ("label", "model_id", "predicted")}
    try:
        checked = FeedbackRequest.model_validate(
            {
                "pixels": [0] * 784,  # the picture's, below
                **{k: _field(v) for k, v in fields.items() if v not in (None, "")},
            }
        )
    except ValidationError as exc:
        raise _invalid(exc.errors()) from None
    data = await upload.read(imaging.MAX_IMAGE_BYTES + 1)
    try:
        pixels = await run_in_threadpool(imaging.image_to_mnist, data)
    except imaging.ImageError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return make_file(
        pixels, checked.label, Source.image, model_id=checked.model_id, predicted=checked.predicted
    )


def _field(value: object) -> object:
    """A form field as the JSON model expects it: small whole numbers as ints (anything
    else goes to the model as it is, which refuses it with a 422)."""
    if isinstance(value, str) and LABEL.fullmatch(value.strip()):
        return int(value)
    return value


@router.post(
    "/feedback",
    status_code=201,
    response_model=FeedbackItem,
    openapi_extra={"requestBody": BODY},
    **keyed(
        BODY_ERRORS,
        {
            200: {
                "model": FeedbackItem,
                "description": "The same image with the same label: the correction sent before.",
            },
            413: "A picture too large (as /predict/image).",
            415: "Not an image file Pillow can read.",
            422: {"description": "Bad label, pixels, ids; an empty or blank picture."},
            507: "FEEDBACK_MAX corrections are stored.",
        },
    ),
)
async def add_feedback(
    request: Request,
    response: Response,
    corrections: CorrectionsDep,
    index: ModelIndexDep,
    traffic: TrafficDep,
) -> FeedbackItem:
    """Say what a digit really is: JSON ``{"pixels", "label", "model_id"?, "predicted"?}``,
    or multipart with a picture ``file`` (prepared as ``/predict/image`` prepares it) and
    the same fields. 201 with the new correction; 200 with the earlier one when the same
    image was sent with the same label before. A new correction naming the model that
    answered and what it predicted counts for that side of a running canary or shadow
    split (its statistics' corrections and accuracy)."""
    if request.headers.get("content-type", "").startswith(MULTIPART):
        record = await _from_form(request)
    else:
        record = _from_json(await request.body())
    try:
        added: Added = await run_in_threadpool(corrections.add, record)
    except StoreFull as exc:
        raise HTTPException(507, str(exc)) from None
    if added.created:
        traffic.correction(added.item, await index.splits())
    response.status_code = 201 if added.created else 200
    response.headers["Location"] = f"/feedback/{added.item.id}"
    return added.item


@router.get("/feedback", response_model=FeedbackList, dependencies=READERS, responses=READ_KEY)
def list_feedback(
    corrections: CorrectionsDep,
    page: PageDep,
    label: Annotated[int | None, Query(ge=0, le=9, description="Only this true label.")] = None,
) -> FeedbackList:
    """Corrections, newest first, without their pixels (``GET /feedback/{id}`` has them)."""
    items, total = corrections.index.list(label, page.offset, page.limit)
    return FeedbackList(items=items, total=total, offset=page.offset, limit=page.limit)


@router.get(
    "/feedback/stats", response_model=FeedbackStats, dependencies=READERS, responses=READ_KEY
)
def feedback_stats(corrections: CorrectionsDep) -> FeedbackStats:
    """How many corrections per true label, and per (predicted, label) pair."""
    return corrections.index.stats()


def _record(corrections: Corrections, feedback_id: UUID) -> FeedbackFile:
    with http_errors(
        {CorruptCorrection: (503, f"correction {feedback_id}: integrity check failed")}
    ):
        return found(corrections.read(feedback_id), f"correction {feedback_id} not found")


@router.get(
    "/feedback/{feedback_id}.png",
    response_class=Response,
    dependencies=READERS,
    responses={**UNKNOWN, **DAMAGED, **READ_KEY, 200: {"content": {"image/png": {}}}},
)
def feedback_png(feedback_id: UUID, corrections: CorrectionsDep) -> Response:
    """The 28x28 image as a PNG (light ink on black, as the model saw it)."""
    image = _record(corrections, feedback_id).image()
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png")


@router.get(
    "/feedback/{feedback_id}",
    response_model=FeedbackDetail,
    dependencies=READERS,
    responses={**UNKNOWN, **DAMAGED, **READ_KEY},
)
def get_feedback(feedback_id: UUID, corrections: CorrectionsDep) -> FeedbackDetail:
    """One correction with its 28x28 ``pixels`` (0..255)."""
    record = _record(corrections, feedback_id)
    return FeedbackDetail(**record.item().model_dump(), pixels=record.image().tolist())


@router.delete(
    "/feedback/{feedback_id}",
    status_code=204,
    **keyed(UNKNOWN),
)
def delete_feedback(feedback_id: UUID, corrections: CorrectionsDep) -> Response:
    """Remove a correction (moderation): its file first, then its index entry. Jobs that
    froze it before skip it if they resume later."""
    if not corrections.delete(feedback_id):
        raise HTTPException(404, f"correction {feedback_id} not found")
    return Response(status_code=204)


@router.get("/jobs/{job_id}/feedback", response_model=list[UUID], responses={404: UNKNOWN[404]})
def job_feedback(job_id: UUID, jobs: JobsDep) -> list[UUID]:
    """The correction ids a job froze at its start (sorted); 404 if it froze none."""
    ids = finetune.read_frozen(jobs.redis, jobs.keys, job_id)
    return found(ids, f"job {job_id} froze no corrections")
