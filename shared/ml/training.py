"""The training loop: mini-batch gradient descent with momentum and a decaying
learning rate. Knows nothing of Celery or Redis; the caller watches progress
through ``on_epoch`` and stops the run by raising from it."""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from shared.ml import mlp
from shared.ml.early_stopping import Watch, observe, should_stop
from shared.schemas.common import N_CLASSES
from shared.schemas.jobs import EpochRecord
from shared.schemas.params import EarlyStopping, LrSchedule, TrainParams

EVAL_CHUNK = 2048  # rows per evaluation product: 6 MB of float32, GEMM-efficient


class Diverged(ArithmeticError):
    """The cost stopped being a number: the run cannot come back from it."""

    def __init__(self, epoch: int, cost: float) -> None:
        super().__init__(
            f"training diverged in epoch {epoch} (cost {cost}): lower eta, or fine-tune "
            "from another model"
        )
        self.epoch = epoch


class Images(Protocol):
    """Where a job's images come from (shared/data/mnist.py's ``Mnist``), as uint8 rows."""

    @property
    def train_images(self) -> np.ndarray: ...
    @property
    def train_labels(self) -> np.ndarray: ...
    @property
    def test_images(self) -> np.ndarray: ...
    @property
    def test_labels(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Dataset:
    """uint8 images and labels, split as the job's parameters ask."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def split(params: TrainParams, data: Images) -> Dataset:
    """Training subset and a seeded validation hold-out (fixed across resumes)."""
    n = params.train_size or len(data.train_labels)
    x, y = data.train_images[:n], data.train_labels[:n]
    n_val = int(n * params.validation_fraction)
    if not n_val:  # views, not a 47 MB copy of the images for every job
        return Dataset(x, y, x[:0], y[:0], data.test_images, data.test_labels)
    order = np.random.default_rng([params.seed, 1]).permutation(n)
    val, fit = order[:n_val], order[n_val:]
    return Dataset(x[fit], y[fit], x[val], y[val], data.test_images, data.test_labels)


@dataclass
class TrainState:
    """Everything needed to continue a run exactly where it stopped."""

    weights: mlp.Weights
    previous_step: mlp.Weights
    eta: float
    epoch: int  # epochs finished
    rng: np.random.Generator
    history: list[EpochRecord] = field(default_factory=list)
    watch: Watch | None = None  # early stopping's counters (only when it is asked for)
    best_weights: mlp.Weights | None = None  # the weights of watch.best_epoch


def init_state(params: TrainParams, n_features: int = 784) -> TrainState:
    rng = np.random.default_rng(params.seed)
    dtype = np.dtype(params.dtype).type
    weights = mlp.init_weights(n_features, params.n_hidden, N_CLASSES, rng, dtype)
    return TrainState(weights, mlp.Weights.zeros_like(weights), params.eta, 0, rng)


def learning_rate(params: TrainParams, eta: float, epoch: int) -> float:
    """The rate for 0-based ``epoch``, given the previous epoch's ``eta``."""
    if params.lr_schedule is LrSchedule.compound:
        return eta / (1.0 + params.decrease_const * epoch)
    return params.eta / (1.0 + params.decrease_const * epoch)


def predicted_labels(
    weights: mlp.Weights, x: np.ndarray, scale: float, chunk: int = EVAL_CHUNK
) -> np.ndarray:
    """Labels of ``x`` (uint8 rows), in large chunks through buffers allocated once per
    call, in the weights' dtype (the one inference path of training and evaluation)."""
    out = np.empty(len(x), dtype=np.int64)
    if len(x) == 0:
        return out
    rows = min(chunk, len(x))
    batch = np.empty((rows, x.shape[1]), weights.w1.dtype)
    work = mlp.Workspace.allocate(weights, rows)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        xb = batch[: len(part)]
        _to_float(part, scale, out=xb)
        _, logits = mlp.forward(weights, xb, work.rows(len(part)))
        out[start : start + len(part)] = logits.argmax(axis=1)
    return out


def accuracy(
    weights: mlp.Weights, x: np.ndarray, y: np.ndarray, scale: float, chunk: int = EVAL_CHUNK
) -> float:
    """Share of ``x`` (uint8 rows) classified as ``y`` (NaN for no rows)."""
    if len(y) == 0:
        return float("nan")
    labels = predicted_labels(weights, x, scale, chunk)
    return int(np.count_nonzero(labels == y)) / len(y)


def _to_float(raw: np.ndarray, scale: float, out: np.ndarray) -> np.ndarray:
    """``out = raw * scale``: uint8 pixels to the run's dtype (two fast passes;
    one mixed-type multiply is slower than a cast and an in-place multiply)."""
    np.copyto(out, raw)
    if scale != 1.0:
        np.multiply(out, out.dtype.type(scale), out=out)
    return out


EpochCallback = Callable[[TrainState, EpochRecord], None]


@dataclass
class Buffers:
    """Arrays a run reuses for every mini-batch, sized for its largest one.

    raw: (batch, features) uint8 rows gathered from the training set;
    x: (batch, features) the same rows in the run's dtype, scaled;
    y: (batch, outputs) their one-hot targets; work: forward/backward arrays.
    """

    raw: np.ndarray
    x: np.ndarray
    y: np.ndarray
    work: mlp.Workspace

    @classmethod
    def allocate(cls, weights: mlp.Weights, batch: int) -> "Buffers":
        dtype = weights.w1.dtype
        n_features, n_output = weights.w1.shape[1], weights.w2.shape[0]
        return cls(
            raw=np.empty((batch, n_features), np.uint8),
            x=np.empty((batch, n_features), dtype),
            y=np.empty((batch, n_output), dtype),
            work=mlp.Workspace.allocate(weights, batch),
        )

    def gather(
        self, images: np.ndarray, targets: np.ndarray, idx: np.ndarray, scale: float
    ) -> tuple[np.ndarray, np.ndarray, mlp.Workspace]:
        """Rows ``idx`` of ``images`` (as floats) and ``targets``, and a workspace
        for them: views of the buffers, valid until the next call."""
        n = len(idx)
        # mode="clip" skips NumPy's bounds-checked, buffered path (idx is a permutation)
        raw = np.take(images, idx, axis=0, out=self.raw[:n], mode="clip")
        y = np.take(targets, idx, axis=0, out=self.y[:n], mode="clip")
        return _to_float(raw, scale, out=self.x[:n]), y, self.work.rows(n)


def batch_size(n: int, minibatches: int) -> int:
    """The largest part ``np.array_split`` makes of ``n`` samples."""
    return -(-n // minibatches)


def run_epoch(
    state: TrainState,
    params: TrainParams,
    data: Dataset,
    targets: np.ndarray,
    buffers: Buffers | None = None,
) -> float:
    """One pass over the training set; returns the mean mini-batch cost.

    Updates ``state.weights`` and ``state.previous_step`` in place.
    """
    n = len(data.train_y)
    if buffers is None:
        buffers = Buffers.allocate(state.weights, batch_size(n, params.minibatches))
    scale = params.input_scaling.factor
    order = state.rng.permutation(n) if params.shuffle else np.arange(n)
    total = 0.0
    for idx in np.array_split(order, params.minibatches):
        x, y, work = buffers.gather(data.train_x, targets, idx, scale)
        hidden, logits = mlp.forward(state.weights, x, work)
        total += mlp.cost(logits, y, state.weights, params.l1, params.l2, work)
        output = mlp.sigmoid(logits)
        grads = mlp.backward(state.weights, x, hidden, output, y, params.l1, params.l2, work)
        step = state.previous_step
        mlp.update(state.weights, grads, step, state.eta, params.alpha, out=step)
    return total / params.minibatches


def _own_arrays(weights: mlp.Weights, dtype: np.dtype) -> mlp.Weights:
    """``weights`` as writable C-ordered arrays of ``dtype`` (copies only if needed)."""
    return mlp.Weights(*(np.require(a, dtype, ["C", "W"]) for a in weights.arrays()))


def train(
    params: TrainParams,
    data: Dataset,
    *,
    state: TrainState | None = None,
    on_epoch: EpochCallback | None = None,
    early_stopping: EarlyStopping | None = None,
) -> TrainState:
    """Train from ``state`` (a fresh one by default) up to ``params.epochs``.

    With ``early_stopping`` (which needs a validation split) the run may end sooner,
    and the returned state holds the weights of its best epoch (see
    shared/early_stopping.py); its counters and those weights are part of the state,
    so a run resumed from a checkpoint stops where an uninterrupted one would.
    """
    state = state or init_state(params, data.train_x.shape[1])
    dtype = np.dtype(params.dtype)
    state.weights = _own_arrays(state.weights, dtype)
    state.previous_step = _own_arrays(state.previous_step, dtype)
    targets = mlp.onehot(data.train_y, N_CLASSES, dtype.type)
    buffers = Buffers.allocate(state.weights, batch_size(len(data.train_y), params.minibatches))
    while state.epoch < params.epochs and not stopped_early(state, early_stopping):
        started = time.perf_counter()
        state.eta = learning_rate(params, state.eta, state.epoch)
        mean_cost = run_epoch(state, params, data, targets, buffers)
        if not math.isfinite(mean_cost):  # nothing non-finite reaches a record
            raise Diverged(state.epoch + 1, mean_cost)
        state.epoch += 1
        val_accuracy = (
            accuracy(state.weights, data.val_x, data.val_y, params.input_scaling.factor)
            if len(data.val_y)
            else None
        )
        record = EpochRecord(
            epoch=state.epoch,
            cost=mean_cost,
            seconds=time.perf_counter() - started,  # validation included
            eta=state.eta,
            val_accuracy=val_accuracy,
        )
        if early_stopping is not None and val_accuracy is not None:
            state.watch = observe(
                state.watch or Watch(), state.epoch, val_accuracy, early_stopping.min_delta
            )
            if state.watch.best_epoch == state.epoch:
                state.best_weights = mlp.Weights(*(a.copy() for a in state.weights.arrays()))
        state.history.append(record)
        if on_epoch is not None:
            on_epoch(state, record)
    if early_stopping is not None and state.best_weights is not None:
        state.weights = _own_arrays(state.best_weights, dtype)
    return state


def stopped_early(state: TrainState, early_stopping: EarlyStopping | None) -> bool:
    """Early stopping has ended the run (``patience`` epochs without improvement)."""
    return (
        early_stopping is not None
        and state.watch is not None
        and should_stop(state.watch, early_stopping.patience)
    )
