"""What a trained model gets wrong on the test set: the confusion matrix and the
first misclassified images, as in the book's chapter (stored with every model)."""

from dataclasses import dataclass

import numpy as np

from shared import mlp

N_CLASSES = 10
MAX_ERRORS = 100
CHUNK = 2048  # rows per product, as in shared.training.accuracy (same arithmetic, same labels)


@dataclass(frozen=True)
class Evaluation:
    confusion: list[list[int]]  # confusion[true][predicted]
    errors: list[dict[str, int]]  # {"index", "label", "predicted"}, in test-set order

    def meta(self) -> dict[str, object]:
        return {"confusion": self.confusion, "errors": self.errors}


def predicted_labels(
    weights: mlp.Weights, x: np.ndarray, scale: float, chunk: int = CHUNK
) -> np.ndarray:
    """Labels of ``x`` (uint8 rows), computed chunk by chunk in the weights' dtype."""
    dtype = weights.w1.dtype
    out = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].astype(dtype)
        if scale != 1.0:
            np.multiply(part, dtype.type(scale), out=part)
        _, logits = mlp.forward(weights, part)
        out[start : start + len(part)] = logits.argmax(axis=1)
    return out


def evaluate(
    weights: mlp.Weights,
    x: np.ndarray,
    y: np.ndarray,
    scale: float,
    max_errors: int = MAX_ERRORS,
    chunk: int = CHUNK,
) -> Evaluation:
    """Confusion matrix (rows: true label, columns: predicted) and the first
    ``max_errors`` misclassified rows of ``x`` with their index and both labels."""
    predicted = predicted_labels(weights, x, scale, chunk)
    truth = np.asarray(y, dtype=np.int64)
    confusion = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    wrong = np.flatnonzero(predicted != truth)[:max_errors]
    errors = [
        {"index": int(i), "label": int(truth[i]), "predicted": int(predicted[i])} for i in wrong
    ]
    return Evaluation(confusion.tolist(), errors)
