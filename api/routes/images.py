"""``POST /predict/image``: classify an uploaded picture of a digit."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api import imaging
from api.deps import ServerDep, require_api_key_for_predict
from api.metrics import count_predictions
from api.serving import predict
from shared.schemas import AliasName, ErrorBody, Prediction

router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key_for_predict)])


class ValidationErrors(BaseModel):
    detail: list[dict[str, Any]]


class ImagePrediction(Prediction):
    pixels: list[list[int]] = Field(
        description="The 28x28 image (0..255, light ink on black) the model classified."
    )


@router.post(
    "/predict/image",
    response_model=ImagePrediction,
    responses={
        400: {"description": "The body is not decodable multipart data."},
        404: {"model": ErrorBody, "description": "No model with the given id."},
        413: {
            "model": ErrorBody,
            "description": f"More than {imaging.MAX_IMAGE_BYTES} bytes "
            f"or {imaging.MAX_IMAGE_PIXELS} pixels.",
        },
        415: {"model": ErrorBody, "description": "Not an image file Pillow can read."},
        422: {
            "model": ErrorBody | ValidationErrors,
            "description": "An empty file or no digit in the image (a message), "
            "or a missing or invalid form field (a list, as for every 422).",
        },
        503: {"model": ErrorBody, "description": "No model trained yet, or its file is bad."},
    },
)
async def predict_image(
    server: ServerDep,
    file: Annotated[UploadFile, File(description="A PNG, JPEG, ... picture of one digit.")],
    model_id: Annotated[
        UUID | None, Form(description="Default: the serving alias, else the newest model.")
    ] = None,
    alias: Annotated[AliasName | None, Form(description="A model by alias.")] = None,
) -> ImagePrediction:
    """Classify a picture of one handwritten digit, any size, either polarity.

    The picture goes through MNIST's own preparation: grey levels, dark-on-light
    inverted to light-on-dark, cropped to the digit, scaled to fit 20x20 keeping its
    aspect ratio, centred by centre of mass in 28x28. The answer is that of
    ``/predict`` plus the 28x28 ``pixels`` the model saw.
    """
    if model_id is not None and alias is not None:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "alias"),
                    "msg": "send at most one of model_id or alias",
                    "type": "value_error",
                }
            ]
        )
    data = await file.read(imaging.MAX_IMAGE_BYTES + 1)
    try:
        pixels = await run_in_threadpool(imaging.image_to_mnist, data)
    except imaging.ImageError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    served = await server.model(model_id, alias)
    probabilities = predict(served.model, pixels.reshape(1, -1))[0]
    count_predictions(1, "/predict/image")
    return ImagePrediction(
        label=int(probabilities.argmax()),
        probabilities=probabilities.tolist(),
        model_id=served.model.id,
        alias=served.alias,
        pixels=pixels.tolist(),
    )
