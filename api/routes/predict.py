"""Classify 0..255 pixel images with a trained model."""

from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException

from api.deps import ModelsDep, RegistryDep, require_api_key_for_predict
from api.errors import BODY_ERRORS
from api.metrics import count_predictions
from api.serving import ModelCache, predict
from shared.registry import Registry
from shared.schemas import BatchPrediction, ErrorBody, Prediction, PredictRequest
from shared.store import LoadedModel, ModelFileError

router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key_for_predict)])


def serving_model(model_id: UUID | None, registry: Registry, models: ModelCache) -> LoadedModel:
    """The model asked for, or the newest; 404/503 as HTTP errors."""
    model_id = model_id or registry.latest_model_id()
    if model_id is None:
        raise HTTPException(503, "no trained model yet: train one with POST /jobs")
    info = registry.get_model(model_id)
    if info is None:
        raise HTTPException(404, f"model {model_id} not found")
    try:
        return models.get(info)
    except ModelFileError as exc:
        raise HTTPException(503, str(exc)) from exc


@router.post(
    "/predict",
    response_model=Prediction | BatchPrediction,
    responses={
        **BODY_ERRORS,
        404: {"model": ErrorBody, "description": "No model with the given id."},
        503: {"model": ErrorBody, "description": "No model trained yet, or its file is bad."},
    },
)
def predict_digits(
    request: PredictRequest, registry: RegistryDep, models: ModelsDep
) -> Prediction | BatchPrediction:
    """One image (``pixels``) answers ``label``; a batch (``images``) answers ``labels``."""
    model = serving_model(request.model_id, registry, models)
    model_id = model.id
    images = [request.pixels] if request.pixels is not None else request.images or []
    probabilities = predict(model, images)
    labels = probabilities.argmax(axis=1).tolist()
    count_predictions(len(labels), "/predict")
    if request.pixels is not None:
        return Prediction(
            label=labels[0], probabilities=probabilities[0].tolist(), model_id=model_id
        )
    return BatchPrediction(labels=labels, probabilities=probabilities.tolist(), model_id=model_id)
