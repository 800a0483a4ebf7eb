"""Input drift, the numerics: per-image summaries a person understands, fixed-bin
histograms, and the population stability index between two histograms. Pure NumPy;
what is stored where is shared/drift/'s business (docs/lifecycle.md "Input drift").

The summaries of one 28x28 image of 0..255 pixels (light ink on black, as MNIST):

- ``ink_mass``: the sum of the pixels / 255, in fully lit pixels (MNIST: 100 or so);
  thicker strokes or a background that is not black raise it.
- ``bbox_height``, ``bbox_width``: the rows and columns spanned by pixels of at least
  ``INK_LEVEL`` (MNIST fits each digit into 20x20, so most are 20 high).
- ``centroid_offset``: how far, in pixels, the intensity-weighted centre lies from
  (14, 14), where MNIST puts every digit's centre of mass (under 0.71 for all of them).
- ``stroke_intensity``: the mean of the pixels of at least ``INK_LEVEL`` (MNIST:
  about 205: anti-aliased strokes; saturated or faded ink moves it).

Of each answer: ``predicted_class`` and ``top_probability`` (the largest of the ten
normalised outputs).

An image without ink counts as 0 everywhere (offset included).
"""

from collections.abc import Mapping
from datetime import datetime
from uuid import UUID

import numpy as np

from shared.ml import mlp
from shared.schemas.common import IMAGE_SIDE, N_CLASSES, N_PIXELS
from shared.schemas.models import (
    INPUT_SUMMARIES,
    SUMMARIES,
    DriftReport,
    Histogram,
    ReferenceProfile,
    SummaryDrift,
)

INK_LEVEL = 64.0
"""A pixel at least this bright (of 255) is ink for the bounding box and the stroke."""
CENTRE = 14.0
"""Where MNIST puts a digit's centre of mass (row and column, 0-based)."""
FLOOR = 1e-4
"""The share an empty bin counts as in the PSI (ln 0 is not a number)."""
CHUNK = 4096
"""Images summarised or answered at once: bounded memory for MNIST's 60,000."""

EDGES: Mapping[str, tuple[float, ...]] = {
    "ink_mass": (0, 50, 70, 90, 110, 130, 160, 200, 784),
    "bbox_height": (0, 1, 10, 15, 19, 20, 21, 24, 28),
    "bbox_width": (0, 1, 6, 10, 14, 18, 20, 21, 24, 28),
    "centroid_offset": (0, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 14),
    "stroke_intensity": (0, 64, 160, 180, 200, 220, 240, 256),
    "predicted_class": tuple(range(N_CLASSES + 1)),
    "top_probability": (0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 1),
}
"""The stated bin edges of each summary. Bin ``i`` is ``[edges[i], edges[i+1])``; values
beyond the ends count in the end bins. Chosen on MNIST (the 1st, 50th and 99th
percentiles of its training images: ink mass 39, 100, 193; height 14, 20, 20; width 4,
16, 20; stroke 175, 206, 227; offset at most 0.71, so every MNIST digit is in the first
bin) so that its own images spread over a few bins while the usual departures land in
bins of their own, and few enough bins that a window of a few hundred MNIST images
stays well below 0.1. A profile keeps its edges: a window is binned by its reference's
own edges, so older profiles stay comparable if these change."""


def summarise(images: np.ndarray) -> np.ndarray:
    """``(n, 5)`` float64: the :data:`~shared.schemas.models.INPUT_SUMMARIES` of each
    image, from ``(n, 784)`` or ``(n, 28, 28)`` pixels in 0..255 (any numeric dtype)."""
    x = np.asarray(images).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    out = np.empty((len(x), len(INPUT_SUMMARIES)), dtype=np.float64)
    for start in range(0, len(x), CHUNK):
        out[start : start + CHUNK] = _summarise(x[start : start + CHUNK].astype(np.float32))
    return out


def _summarise(x: np.ndarray) -> np.ndarray:
    index = np.arange(IMAGE_SIDE, dtype=np.float32)
    total = x.sum(axis=(1, 2), dtype=np.float64)
    ink: np.ndarray = np.greater_equal(x, INK_LEVEL)
    rows: np.ndarray = np.any(ink, axis=2)  # (n, 28): which rows hold ink
    cols: np.ndarray = np.any(ink, axis=1)
    has_ink = np.any(rows, axis=1)
    height = IMAGE_SIDE - rows.argmax(axis=1) - rows[:, ::-1].argmax(axis=1)
    width = IMAGE_SIDE - cols.argmax(axis=1) - cols[:, ::-1].argmax(axis=1)
    lit = np.maximum(total, 1e-9)
    row = (x.sum(axis=2) @ index) / lit
    col = (x.sum(axis=1) @ index) / lit
    offset = np.where(total > 0, np.hypot(row - CENTRE, col - CENTRE), 0.0)
    ink_pixels = ink.sum(axis=(1, 2))
    stroke = (x * ink).sum(axis=(1, 2), dtype=np.float64) / np.maximum(ink_pixels, 1)
    return np.stack(
        [
            total / 255.0,
            np.where(has_ink, height, 0),
            np.where(has_ink, width, 0),
            offset,
            stroke,
        ],
        axis=1,
    )


def answers(probabilities: np.ndarray) -> np.ndarray:
    """``(n, 2)`` float64: the predicted class and the top probability of each row."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1, N_CLASSES)
    return np.stack([p.argmax(axis=1), p.max(axis=1)], axis=1)


def probabilities(weights: mlp.Weights, images: np.ndarray, scale: float) -> np.ndarray:
    """The model's ``(n, 10)`` answers to 0..255 rows, computed as the API computes
    them (float32 weights and inputs), in chunks."""
    w = weights.astype(np.float32)
    x = np.asarray(images).reshape(-1, N_PIXELS)
    out = np.empty((len(x), N_CLASSES), dtype=np.float32)
    for start in range(0, len(x), CHUNK):
        part = x[start : start + CHUNK].astype(np.float32) * np.float32(scale)
        out[start : start + CHUNK] = mlp.predict_proba(w, part)
    return out


def histogram(values: np.ndarray, edges: tuple[float, ...] | list[float]) -> np.ndarray:
    """Counts of ``values`` over the bins of ``edges`` (values beyond the ends count in
    the end bins)."""
    bounds = np.asarray(edges, dtype=np.float64)
    bins = np.searchsorted(bounds, np.asarray(values, dtype=np.float64), side="right") - 1
    return np.bincount(np.clip(bins, 0, len(bounds) - 2), minlength=len(bounds) - 1)


def shares(counts: np.ndarray | list[int]) -> np.ndarray:
    """Counts as shares of their total (all 0 when there are none)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else np.zeros_like(c)


def psi(served: np.ndarray | list[int], reference: np.ndarray | list[int]) -> float:
    """The population stability index of two histograms over the same bins:
    ``sum((p - q) * ln(p / q))`` over the shares ``p`` (served) and ``q`` (reference),
    each floored at :data:`FLOOR`. 0 for identical shares; 0.1 is usually read as a
    moderate shift, 0.2 as a large one. Symmetric in its two arguments."""
    p = np.maximum(shares(served), FLOOR)
    q = np.maximum(shares(reference), FLOOR)
    return float(np.sum((p - q) * np.log(p / q)))


def rows(images: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """``(n, 7)``: every summary of each input and its answer, in :data:`SUMMARIES` order."""
    return np.concatenate([summarise(images), answers(probabilities)], axis=1)


def reference_profile(
    train_images: np.ndarray,
    test_images: np.ndarray,
    weights: mlp.Weights,
    scale: float,
    source: str,
    now: datetime,
) -> ReferenceProfile:
    """A model's profile: its training images summarised, and its answers on its test
    images, as histograms over :data:`EDGES`."""
    inputs = summarise(train_images)
    outputs = answers(probabilities(weights, test_images, scale))
    columns = [*inputs.T, *outputs.T]  # training images' summaries, then test answers
    histograms = {
        name: Histogram(edges=list(EDGES[name]), counts=histogram(values, EDGES[name]).tolist())
        for name, values in zip(SUMMARIES, columns, strict=True)
    }
    return ReferenceProfile.model_validate(
        {
            "source": source,
            "computed_at": now,
            "inputs": len(inputs),
            "answers": len(outputs),
            **histograms,
        }
    )


def report(
    model_id: UUID,
    profile: ReferenceProfile,
    window: np.ndarray,
    since: datetime | None,
    threshold: float,
    min_samples: int,
) -> DriftReport:
    """The ``(n, 7)`` rows of a window (:func:`rows`) against ``profile``: each
    summary's PSI and both histograms (binned by the profile's own edges)."""
    values = np.asarray(window, dtype=np.float64).reshape(-1, len(SUMMARIES))
    psis: dict[str, float | None] = {}
    drawn = {}
    for i, (name, reference) in enumerate(profile.histograms().items()):
        served = histogram(values[:, i], reference.edges)
        psis[name] = psi(served, reference.counts) if len(values) else None
        drawn[name] = SummaryDrift(
            edges=reference.edges,
            reference=shares(reference.counts).round(6).tolist(),
            served=shares(served).round(6).tolist(),
        )
    moved = sorted(
        (name for name, value in psis.items() if value is not None and value > threshold),
        key=lambda name: -(psis[name] or 0.0),
    )
    return DriftReport(
        model_id=model_id,
        window=len(values),
        psi={name: None if v is None else round(v, 6) for name, v in psis.items()},
        drifted=bool(moved) and len(values) >= min_samples,
        threshold=threshold,
        min_samples=min_samples,
        moved=moved,
        since=since,
        reference_source=profile.source,
        histograms=drawn,
    )
