"""Classify 0..255 pixel images with a trained model."""

from typing import Annotated
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from api import predict_body
from api.deps import ModelIndexDep, ModelsDep, require_api_key_for_predict
from api.errors import BODY_ERRORS
from api.metrics import count_predictions
from api.serving import ModelCache, predict
from shared.registry import ModelIndex
from shared.schemas import BatchPrediction, ErrorBody, Prediction, PredictRequest
from shared.store import LoadedModel, ModelFileError

router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key_for_predict)])


INLINE_BYTES = 64 * 1024
"""Bodies up to this size (a few images) are handled on the event loop: it takes less
time than a hop to a worker thread. Larger batches take milliseconds: a thread."""

JSON = "application/json"
BODY = {"content": {JSON: {"schema": PredictRequest.model_json_schema()}}, "required": True}
"""The body as documented: :class:`PredictRequest`, which also checks any body the
fast path of :mod:`api.predict_body` does not accept outright."""


async def serving_model(
    model_id: UUID | None, index: ModelIndex, models: ModelCache
) -> LoadedModel:
    """The model asked for, or the newest; 404/503 as HTTP errors."""
    model_id = model_id or await index.latest_model_id()
    if model_id is None:
        raise HTTPException(503, "no trained model yet: train one with POST /jobs")
    cached = models.cached(model_id)
    if cached is not None:
        return cached
    info = await index.get_model(model_id)
    if info is None:
        raise HTTPException(404, f"model {model_id} not found")
    try:
        return await run_in_threadpool(models.get, info)  # reads and hashes the file
    except ModelFileError as exc:
        raise HTTPException(503, str(exc)) from exc


async def request_body(request: Request) -> bytes:
    """The raw body, for :mod:`api.predict_body` to parse."""
    return await request.body()


def _answer(request: predict_body.PredictInput, model: LoadedModel) -> Response:
    probabilities = predict(model, request.images)
    labels = probabilities.argmax(axis=1)
    count_predictions(len(labels), "/predict")
    if request.single:
        content = {"label": labels[0], "probabilities": probabilities[0], "model_id": model.id}
    else:
        content = {"labels": labels, "probabilities": probabilities, "model_id": model.id}
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)


@router.post(
    "/predict",
    response_model=Prediction | BatchPrediction,
    responses={
        **BODY_ERRORS,
        404: {"model": ErrorBody, "description": "No model with the given id."},
        422: {
            "description": "Not one image or a batch of 784 values in 0..255.",
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
        },
        503: {"model": ErrorBody, "description": "No model trained yet, or its file is bad."},
    },
    openapi_extra={"requestBody": BODY},
)
async def predict_digits(
    body: Annotated[bytes, Depends(request_body)], index: ModelIndexDep, models: ModelsDep
) -> Response:
    """One image (``pixels``) answers ``label``; a batch (``images``) answers ``labels``."""
    inline = len(body) <= INLINE_BYTES
    request = (
        predict_body.parse(body) if inline else await run_in_threadpool(predict_body.parse, body)
    )
    model = await serving_model(request.model_id, index, models)
    return _answer(request, model) if inline else await run_in_threadpool(_answer, request, model)
