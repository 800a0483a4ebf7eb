"""What a trained model gets wrong on the test set: the confusion matrix and the
first misclassified images, as in the book's chapter (stored with every model)."""

from dataclasses import dataclass

import numpy as np

from shared.ml import mlp
from shared.ml.training import EVAL_CHUNK, predicted_labels
from shared.schemas.common import N_CLASSES
from shared.schemas.models import Misclassified

MAX_ERRORS = 100


@dataclass(frozen=True)
class Evaluation:
    confusion: list[list[int]]  # confusion[true][predicted]
    errors: list[Misclassified]  # in test-set order


def evaluate(
    weights: mlp.Weights,
    x: np.ndarray,
    y: np.ndarray,
    scale: float,
    max_errors: int = MAX_ERRORS,
    chunk: int = EVAL_CHUNK,
) -> Evaluation:
    """Confusion matrix (rows: true label, columns: predicted) and the first
    ``max_errors`` misclassified rows of ``x`` with their index and both labels."""
    predicted = predicted_labels(weights, x, scale, chunk)
    truth = np.asarray(y, dtype=np.int64)
    confusion = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    wrong = np.flatnonzero(predicted != truth)[:max_errors]
    errors = [
        Misclassified(index=int(i), label=int(truth[i]), predicted=int(predicted[i])) for i in wrong
    ]
    return Evaluation(confusion.tolist(), errors)
