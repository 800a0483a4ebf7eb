"""A training run's whole state as bytes and back: what lets another worker resume it.

An ``.npz`` (nothing pickled) of the weights, the momentum terms, the early-stopping
best weights if any, and a JSON :class:`CheckpointMeta` (learning rate, epoch, the
random generator's state, the history, early stopping's counters). Versioned, so a
later format can still read this one; the first format had no version field and reads
as version 1.
"""

import io
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from shared.ml import mlp
from shared.ml.early_stopping import Watch
from shared.ml.training import TrainState
from shared.schemas.jobs import EpochRecord

WEIGHT_NAMES = ("w1", "b1", "w2", "b2")


class CheckpointError(ValueError):
    """Bytes that are not a readable checkpoint."""


class WatchState(BaseModel):
    best_value: float | None = None
    best_epoch: int = 0
    stale: int = 0


class CheckpointMeta(BaseModel):
    version: Literal[1] = 1
    eta: float
    epoch: int = Field(ge=0)
    rng: dict[str, Any] = Field(description="numpy's bit generator state")
    history: list[EpochRecord] = Field(default_factory=list)
    watch: WatchState | None = None


def dumps(state: TrainState) -> bytes:
    meta = CheckpointMeta(
        eta=state.eta,
        epoch=state.epoch,
        rng=state.rng.bit_generator.state,
        history=state.history,
        watch=WatchState(**state.watch.to_dict()) if state.watch else None,
    )
    arrays = {name: getattr(state.weights, name) for name in WEIGHT_NAMES}
    arrays |= {f"step_{name}": getattr(state.previous_step, name) for name in WEIGHT_NAMES}
    if state.best_weights is not None:
        arrays |= {f"best_{name}": getattr(state.best_weights, name) for name in WEIGHT_NAMES}
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(meta.model_dump_json()), **arrays)
    return buffer.getvalue()


def loads(payload: bytes) -> TrainState:
    """The state, or :class:`CheckpointError` saying why not."""
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            meta = CheckpointMeta.model_validate_json(str(npz["meta"]))
            weights = mlp.Weights(*(npz[name] for name in WEIGHT_NAMES))
            step = mlp.Weights(*(npz[f"step_{name}"] for name in WEIGHT_NAMES))
            best = (
                mlp.Weights(*(npz[f"best_{name}"] for name in WEIGHT_NAMES))
                if "best_w1" in npz.files
                else None
            )
        rng = np.random.default_rng()
        rng.bit_generator.state = meta.rng
    except Exception as exc:  # any damage: the caller starts over from an earlier point
        raise CheckpointError(f"{type(exc).__name__}: {exc}") from None
    watch = Watch(**meta.watch.model_dump()) if meta.watch else None
    return TrainState(weights, step, meta.eta, meta.epoch, rng, meta.history, watch, best)
