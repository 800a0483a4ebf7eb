"""Classify 0..255 pixel images with a trained model."""

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from api import predict_body
from api.canary import Traffic
from api.deps import ClientId, DriftDep, ServerDep, TrafficDep, require_key_for_reads
from api.drift import DriftRecorder
from api.errors import BODY_ERRORS, errors
from api.metrics import count_predictions
from api.serving import Served, predict
from shared.schemas.predict import BatchPrediction, Prediction, PredictRequest

router = APIRouter(tags=["predict"], dependencies=[Depends(require_key_for_reads)])


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


def _answer(
    request: predict_body.PredictInput, served: Served, drift: DriftRecorder, traffic: Traffic
) -> Response:
    probabilities = predict(served.model, request.images)
    drift.observe(served.model.id, request.images, probabilities)  # input drift: buffered only
    labels = probabilities.argmax(axis=1)
    count_predictions(len(labels), "/predict", served.alias, served.variant)
    traffic.observe(served, request.images, probabilities)
    model_id, alias, variant = served.model.id, served.alias, served.variant
    if request.single:
        content = {
            "label": labels[0],
            "probabilities": probabilities[0],
            "model_id": model_id,
            "alias": alias,
            "variant": variant,
        }
    else:
        content = {
            "labels": labels,
            "probabilities": probabilities,
            "model_id": model_id,
            "alias": alias,
            "variant": variant,
        }
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)


@router.post(
    "/predict",
    response_model=Prediction | BatchPrediction,
    responses=errors(
        BODY_ERRORS,
        {
            404: "No model with the given id, or no such alias.",
            422: {
                "description": "Not one image or a batch of 784 values in 0..255, or both "
                "model_id and alias.",
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
            },
            503: "No model trained yet, or its file is bad.",
        },
    ),
    openapi_extra={"requestBody": BODY},
)
async def predict_digits(
    body: Annotated[bytes, Depends(request_body)],
    server: ServerDep,
    drift: DriftDep,
    traffic: TrafficDep,
    x_client_id: ClientId = None,
) -> Response:
    """One image (``pixels``) answers ``label``; a batch (``images``) answers ``labels``.

    Served by ``model_id`` or ``alias`` when given, else by the serving alias
    (``SERVING_ALIAS``), else by the newest intact model. Through an alias with a canary
    split, the candidate may answer: ``variant`` says which side did (docs/lifecycle.md).
    """
    inline = len(body) <= INLINE_BYTES
    request = (
        predict_body.parse(body) if inline else await run_in_threadpool(predict_body.parse, body)
    )
    served = await server.model(request.model_id, request.alias, x_client_id)
    if inline:
        return _answer(request, served, drift, traffic)
    return await run_in_threadpool(_answer, request, served, drift, traffic)
