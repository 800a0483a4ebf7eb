"""Early stopping: the pure rule with plain numbers, then the training loop on real
MNIST (where it stops, which weights it keeps, and that a resume from a checkpoint
stops at the same epoch with the same weights), then a job through run_job."""

import uuid

import numpy as np
import pytest

from shared.data.mnist import Mnist
from shared.ml import checkpoint, training
from shared.ml.early_stopping import Watch, observe, should_stop
from shared.schemas.jobs import Job, JobRequest, JobStatus
from shared.schemas.params import EarlyStopping
from shared.services import Services
from tests.models import small_params
from worker.run import run_job


def run_rule(values: list[float], patience: int, min_delta: float = 0.0) -> tuple[int, int]:
    """(epoch it stops after, best epoch) for a sequence of validation accuracies."""
    watch = Watch()
    for epoch, value in enumerate(values, start=1):
        watch = observe(watch, epoch, value, min_delta)
        if should_stop(watch, patience):
            return epoch, watch.best_epoch
    return len(values), watch.best_epoch


def test_rule_stops_after_patience_epochs_without_improvement() -> None:
    assert run_rule([0.5, 0.6, 0.7, 0.65, 0.69, 0.7, 0.9], patience=3) == (6, 3)
    assert run_rule([0.5, 0.6, 0.7, 0.65, 0.69, 0.8, 0.9], patience=3) == (7, 7)
    assert run_rule([0.5, 0.5, 0.5], patience=2) == (3, 1)  # equal is not better


def test_rule_counts_only_gains_above_min_delta() -> None:
    # within 0.01 of the best is no improvement; gains are measured from the best
    assert run_rule([0.5, 0.505, 0.509, 0.508], patience=3, min_delta=0.01) == (4, 1)
    assert run_rule([0.5, 0.505, 0.509, 0.515], patience=3, min_delta=0.01) == (4, 4)
    assert run_rule([0.5, 0.52, 0.53, 0.545], patience=2, min_delta=0.01) == (4, 4)


def test_job_request_needs_a_validation_split() -> None:
    with pytest.raises(ValueError, match="early_stopping needs a validation split"):
        JobRequest.model_validate({"early_stopping": {"patience": 2}})
    request = JobRequest.model_validate(
        {"early_stopping": {"patience": 2}, "validation_fraction": 0.1}
    )
    assert request.split()[1].early_stopping == EarlyStopping(patience=2)


# A rate this high makes validation accuracy wander after a few epochs: it stops early.
NOISY = small_params(epochs=40, eta=1.0, alpha=0.5, validation_fraction=0.2)
STOP = EarlyStopping(patience=2)


def val_accuracies(state: training.TrainState) -> list[float]:
    return [row.val_accuracy for row in state.history]  # type: ignore[misc]


@pytest.fixture
def stopped(mnist_data: Mnist) -> training.TrainState:
    return training.train(NOISY, training.split(NOISY, mnist_data), early_stopping=STOP)


def test_training_stops_early_and_keeps_the_best_epoch(
    stopped: training.TrainState, mnist_data: Mnist
) -> None:
    history = val_accuracies(stopped)
    assert training.stopped_early(stopped, STOP) and stopped.epoch < NOISY.epochs
    assert len(history) == stopped.epoch
    best = stopped.watch.best_epoch  # type: ignore[union-attr]
    assert best == stopped.epoch - STOP.patience
    assert history[best - 1] == max(history)
    assert all(value <= history[best - 1] for value in history[best:])
    # the weights returned are the best epoch's: they score its validation accuracy
    data = training.split(NOISY, mnist_data)
    scale = NOISY.input_scaling.factor
    assert training.accuracy(stopped.weights, data.val_x, data.val_y, scale) == history[best - 1]
    # an uninterrupted run of exactly `best` epochs ends with the same weights
    exact = training.train(NOISY.model_copy(update={"epochs": best}), data)
    for kept, ref in zip(stopped.weights.arrays(), exact.weights.arrays(), strict=True):
        np.testing.assert_array_equal(kept, ref)


def test_resume_from_a_checkpoint_stops_at_the_same_epoch_with_the_same_weights(
    stopped: training.TrainState, mnist_data: Mnist
) -> None:
    """Checkpointed one epoch after the best (counters and best weights in it), then
    resumed from its bytes: same stop, same kept weights."""
    data = training.split(NOISY, mnist_data)
    saved: list[bytes] = []
    cut = stopped.watch.best_epoch + 1  # type: ignore[union-attr]

    def checkpoint_then_die(state: training.TrainState, _: object) -> None:
        if state.epoch == cut:
            saved.append(checkpoint.dumps(state))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(NOISY, data, on_epoch=checkpoint_then_die, early_stopping=STOP)
    state = checkpoint.loads(saved[0])
    assert state is not None and state.watch is not None and state.watch.stale == 1
    assert state.best_weights is not None
    resumed = training.train(NOISY, data, state=state, early_stopping=STOP)
    assert resumed.epoch == stopped.epoch
    assert val_accuracies(resumed) == val_accuracies(stopped)
    for a, b in zip(resumed.weights.arrays(), stopped.weights.arrays(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.usefixtures("mnist_data")
def test_job_record_says_where_it_stopped_and_which_epoch_it_kept(
    services: Services, stopped: training.TrainState
) -> None:
    job = Job(id=uuid.uuid4(), params=NOISY, epochs=NOISY.epochs, early_stopping=STOP)
    services.jobs.create(job, max_queued=100)
    assert run_job(job.id, services) is JobStatus.succeeded
    done = services.jobs.get_public(job.id)
    assert done is not None
    assert done.stopped_at_epoch == done.epoch == stopped.epoch < NOISY.epochs
    assert done.best_epoch == stopped.watch.best_epoch  # type: ignore[union-attr]
