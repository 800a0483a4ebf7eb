"""The training loop: mini-batch gradient descent with momentum and a decaying
learning rate. Knows nothing of Celery or Redis; the caller watches progress
through ``on_epoch`` and stops the run by raising from it."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shared import mlp
from shared.mnist import Mnist
from shared.schemas import EpochRecord, LrSchedule, TrainParams

N_CLASSES = 10
EVAL_CHUNK = 10_000


@dataclass(frozen=True)
class Dataset:
    """uint8 images and labels, split as the job's parameters ask."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def split(params: TrainParams, data: Mnist) -> Dataset:
    """Training subset and a seeded validation hold-out (fixed across resumes)."""
    n = params.train_size or len(data.train_labels)
    x, y = data.train_images[:n], data.train_labels[:n]
    n_val = int(n * params.validation_fraction)
    order = np.random.default_rng([params.seed, 1]).permutation(n) if n_val else np.arange(n)
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


def accuracy(
    weights: mlp.Weights, x: np.ndarray, y: np.ndarray, scale: float, chunk: int = EVAL_CHUNK
) -> float:
    """Share of ``x`` classified as ``y``, in large chunks to keep memory bounded."""
    if len(y) == 0:
        return float("nan")
    dtype = weights.w1.dtype
    correct = 0
    for start in range(0, len(y), chunk):
        batch = x[start : start + chunk].astype(dtype) * dtype.type(scale)
        _, logits = mlp.forward(weights, batch)
        correct += int(np.count_nonzero(logits.argmax(axis=1) == y[start : start + chunk]))
    return correct / len(y)


EpochCallback = Callable[[TrainState, EpochRecord], None]


def run_epoch(state: TrainState, params: TrainParams, data: Dataset, targets: np.ndarray) -> float:
    """One pass over the training set; returns the mean mini-batch cost."""
    dtype = state.weights.w1.dtype
    scale = dtype.type(params.input_scaling.factor)
    n = len(data.train_y)
    order = state.rng.permutation(n) if params.shuffle else np.arange(n)
    costs = []
    for idx in np.array_split(order, params.minibatches):
        x = data.train_x[idx].astype(dtype)  # gather uint8 rows, then convert
        if scale != 1:
            x *= scale
        y = targets[idx]
        hidden, logits = mlp.forward(state.weights, x)
        costs.append(mlp.cost(logits, y, state.weights, params.l1, params.l2))
        output = mlp.sigmoid(logits)
        grads = mlp.backward(state.weights, x, hidden, output, y, params.l1, params.l2)
        state.previous_step = mlp.update(
            state.weights, grads, state.previous_step, state.eta, params.alpha
        )
    return float(np.mean(costs))


def train(
    params: TrainParams,
    data: Dataset,
    *,
    state: TrainState | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainState:
    """Train from ``state`` (a fresh one by default) up to ``params.epochs``."""
    state = state or init_state(params, data.train_x.shape[1])
    dtype = np.dtype(params.dtype).type
    targets = mlp.onehot(data.train_y, N_CLASSES, dtype)
    while state.epoch < params.epochs:
        started = time.perf_counter()
        state.eta = learning_rate(params, state.eta, state.epoch)
        mean_cost = run_epoch(state, params, data, targets)
        state.epoch += 1
        record = EpochRecord(
            epoch=state.epoch,
            cost=mean_cost,
            seconds=time.perf_counter() - started,
            eta=state.eta,
            val_accuracy=(
                accuracy(state.weights, data.val_x, data.val_y, params.input_scaling.factor)
                if len(data.val_y)
                else None
            ),
        )
        state.history.append(record)
        if on_epoch is not None:
            on_epoch(state, record)
    return state
