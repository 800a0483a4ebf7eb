"""MNIST test images for the web page: sample digits per class, and any test image by index.

The API reads MNIST from ``MNIST_DIR`` once per process, on the first request that
needs it, and never downloads it (the worker does): missing files answer 503.
"""

import logging
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam

from api.deps import SettingsDep
from api.errors import errors
from shared.data import mnist
from shared.schemas.common import IMAGE_SIDE
from shared.schemas.predict import DatasetImage, DatasetSamples

log = logging.getLogger(__name__)

router = APIRouter(prefix="/dataset", tags=["dataset"])

MAX_PER_CLASS = 20
N_TEST = 10_000

UNAVAILABLE = errors({503: "MNIST is not in MNIST_DIR."})


def load_test_set(directory: Path) -> mnist.Mnist:
    """MNIST from ``directory``, read once per process (a failure is not cached)."""
    try:
        return mnist.load_once(directory)
    except mnist.MnistError as exc:  # which file and where: the log only
        log.warning("dataset: MNIST unavailable: %s", exc)
        raise HTTPException(
            503,
            "MNIST is not available in MNIST_DIR; "
            "the API does not download it: run `python -m shared.mnist download`",
        ) from exc


def _image(data: mnist.Mnist, index: int) -> DatasetImage:
    pixels = np.asarray(data.test_images[index]).reshape(IMAGE_SIDE, IMAGE_SIDE)
    return DatasetImage(index=index, label=int(data.test_labels[index]), pixels=pixels.tolist())


@router.get("/samples", response_model=DatasetSamples, responses=UNAVAILABLE)
def samples(
    settings: SettingsDep,
    per_class: Annotated[
        int, Query(ge=1, le=MAX_PER_CLASS, description="Test images per digit.")
    ] = 10,
) -> DatasetSamples:
    """The first ``per_class`` MNIST test images of each digit, 0 first, in test-set order."""
    data = load_test_set(settings.mnist_dir)
    items = []
    for digit in range(10):
        for index in np.flatnonzero(data.test_labels == digit)[:per_class]:
            items.append(_image(data, int(index)))
    return DatasetSamples(per_class=per_class, items=items)


@router.get(
    "/test/{index}",
    response_model=DatasetImage,
    responses=errors(UNAVAILABLE, {404: "No such test image."}),
)
def get_test_image(
    settings: SettingsDep,
    index: Annotated[int, PathParam(ge=0, le=N_TEST - 1, description="0..9999.")],
) -> DatasetImage:
    """One MNIST test image (e.g. one a model got wrong) with its label."""
    data = load_test_set(settings.mnist_dir)
    if index >= len(data.test_labels):
        raise HTTPException(404, f"test image {index} not found")
    return _image(data, index)
