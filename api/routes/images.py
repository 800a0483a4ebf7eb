"""``POST /predict/image``: classify an uploaded picture of a digit."""

import asyncio
import ctypes
import ctypes.util
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated
from uuid import UUID

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import Field

from api import imaging
from api.deps import ClientId, DriftDep, ServerDep, TrafficDep, require_key_for_reads
from api.errors import ValidationErrors, errors
from api.metrics import count_predictions, count_rejected
from api.serving import predict
from shared.schemas.common import ErrorBody
from shared.schemas.models import AliasName
from shared.schemas.predict import Prediction

MAX_DECODES = 2
"""Pictures decoded at once; more uploads wait their turn. Each decode may hold up to
~100 MB (api/imaging.py), so this bounds what a burst of uploads can make the API
allocate, and a pool of its own keeps the decodes' memory in a few threads' malloc
arenas instead of spreading it over the 40 threads of the shared pool."""
DECODERS = ThreadPoolExecutor(MAX_DECODES, thread_name_prefix="image-decode")
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_malloc_trim = getattr(_libc, "malloc_trim", None)  # glibc only


def decode(data: bytes) -> np.ndarray:
    """:func:`imaging.image_to_mnist`, then ``malloc_trim``: Pillow's image blocks come
    from malloc, and glibc keeps what a thread freed in that thread's arena, so
    without it the API would keep the memory of its largest burst of decodes for
    good (measured in BENCHMARKS.md). On a heap with little free it costs
    microseconds."""
    try:
        return imaging.image_to_mnist(data)
    finally:
        if _malloc_trim is not None:
            _malloc_trim(0)


router = APIRouter(tags=["predict"], dependencies=[Depends(require_key_for_reads)])


class ImagePrediction(Prediction):
    pixels: list[list[int]] = Field(
        description="The 28x28 image (0..255, light ink on black) the model classified."
    )


@router.post(
    "/predict/image",
    response_model=ImagePrediction,
    responses=errors(
        {
            400: {"description": "The body is not decodable multipart data."},
            404: "No model with the given id.",
            413: f"More than {imaging.MAX_IMAGE_BYTES} bytes, {imaging.MAX_IMAGE_PIXELS} pixels "
            f"or {imaging.MAX_IMAGE_SIDE} pixels a side, or above Pillow's decompression-bomb "
            "limit.",
            415: "Not an image file Pillow can read.",
            422: {
                "model": ErrorBody | ValidationErrors,
                "description": "An empty file or no digit in the image (a message), "
                "or a missing or invalid form field (a list, as for every 422).",
            },
            503: "No model trained yet, or its file is bad.",
        }
    ),
)
async def predict_image(
    server: ServerDep,
    drift: DriftDep,
    traffic: TrafficDep,
    file: Annotated[UploadFile, File(description="A PNG, JPEG, ... picture of one digit.")],
    model_id: Annotated[
        UUID | None, Form(description="Default: the serving alias, else the newest model.")
    ] = None,
    alias: Annotated[AliasName | None, Form(description="A model by alias.")] = None,
    x_client_id: ClientId = None,
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
        loop = asyncio.get_running_loop()
        pixels = await loop.run_in_executor(DECODERS, decode, data)
    except imaging.ImageError as exc:
        if isinstance(exc, imaging.ImageTooLarge):
            count_rejected("image_size")
        elif isinstance(exc, imaging.UnreadableImage):
            count_rejected("image_type")
        raise HTTPException(exc.status, str(exc)) from None
    served = await server.model(model_id, alias, x_client_id)
    image = pixels.reshape(1, -1).astype(np.float32)
    answer = predict(served.model, image)
    drift.observe(served.model.id, image, answer)
    count_predictions(1, "/predict/image", served.alias, served.variant)
    traffic.observe(served, image, answer)
    probabilities = answer[0]
    return ImagePrediction(
        label=int(probabilities.argmax()),
        probabilities=probabilities.tolist(),
        model_id=served.model.id,
        alias=served.alias,
        variant=served.variant,
        pixels=pixels.tolist(),
    )
