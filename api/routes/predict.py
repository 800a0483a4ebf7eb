"""Classify 0..255 pixel images with a trained model."""

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from api import predict_body
from api.deps import ServerDep, require_api_key_for_predict
from api.errors import BODY_ERRORS
from api.metrics import count_predictions
from api.serving import Served, predict
from shared.schemas import BatchPrediction, ErrorBody, Prediction, PredictRequest

router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key_for_predict)])


INLINE_BYTES = 64 * 1024
"""Bodies up to this size (a few images) are handled on the event loop: it takes less
time than a hop to a worker thread. Larger batches take milliseconds: a thread."""

JSON = "application/json"
BODY = {"content": {JSON: {"schema": PredictRequest.model_json_schema()}}, "required": True}
"""The body as documented: :class:`PredictRequest`, which also checks any body the
fast path of :mod:`api.predict_body` does not accept outright."""


async def request_body(request: Request) -> bytes:
    """The raw body, for :mod:`api.predict_body` to parse."""
    return await request.body()


def _answer(request: predict_body.PredictInput, served: Served) -> Response:
    probabilities = predict(served.model, request.images)
    labels = probabilities.argmax(axis=1)
    count_predictions(len(labels), "/predict")
    model_id, alias = served.model.id, served.alias
    if request.single:
        content = {
            "label": labels[0],
            "probabilities": probabilities[0],
            "model_id": model_id,
            "alias": alias,
        }
    else:
        content = {
            "labels": labels,
            "probabilities": probabilities,
            "model_id": model_id,
            "alias": alias,
        }
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)


@router.post(
    "/predict",
    response_model=Prediction | BatchPrediction,
    responses={
        **BODY_ERRORS,
        404: {"model": ErrorBody, "description": "No model with the given id, or no such alias."},
        422: {
            "description": "Not one image or a batch of 784 values in 0..255, or both "
            "model_id and alias.",
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
        },
        503: {"model": ErrorBody, "description": "No model trained yet, or its file is bad."},
    },
    openapi_extra={"requestBody": BODY},
)
async def predict_digits(
    body: Annotated[bytes, Depends(request_body)], server: ServerDep
) -> Response:
    """One image (``pixels``) answers ``label``; a batch (``images``) answers ``labels``.

    Served by ``model_id`` or ``alias`` when given, else by the serving alias
    (``SERVING_ALIAS``), else by the newest intact model.
    """
    inline = len(body) <= INLINE_BYTES
    request = (
        predict_body.parse(body) if inline else await run_in_threadpool(predict_body.parse, body)
    )
    served = await server.model(request.model_id, request.alias)
    return _answer(request, served) if inline else await run_in_threadpool(_answer, request, served)
