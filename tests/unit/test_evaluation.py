"""The confusion matrix and the misclassified list on a network built by hand."""

import numpy as np

from shared.ml import mlp
from shared.ml.evaluation import evaluate

SWAP = {3: 5, 5: 3}  # the hand-made network reads a 3 as a 5 and a 5 as a 3


def _network(dtype: type = np.float32) -> mlp.Weights:
    """Ten one-hot inputs; hidden unit k fires for input k; output SWAP.get(k, k) follows it."""
    eye = np.eye(10)
    perm = np.zeros((10, 10))
    for k in range(10):
        perm[SWAP.get(k, k), k] = 1.0
    return mlp.Weights(
        w1=(20 * eye - 10).astype(dtype),
        b1=np.zeros(10, dtype),
        w2=(20 * perm - 10).astype(dtype),
        b2=np.zeros(10, dtype),
    )


def test_confusion_and_errors_of_a_hand_made_network() -> None:
    labels = np.array([0, 3, 5, 1, 3, 9, 5, 2], dtype=np.uint8)
    x = np.eye(10, dtype=np.uint8)[labels]
    result = evaluate(_network(), x, labels, scale=1.0, chunk=3)  # chunks of 3, 3 and 2 rows
    expected = np.zeros((10, 10), dtype=int)
    for label in labels:
        expected[label, SWAP.get(int(label), int(label))] += 1
    assert result.confusion == expected.tolist()
    assert [e.model_dump() for e in result.errors] == [
        {"index": 1, "label": 3, "predicted": 5},
        {"index": 2, "label": 5, "predicted": 3},
        {"index": 4, "label": 3, "predicted": 5},
        {"index": 6, "label": 5, "predicted": 3},
    ]
    assert sum(map(sum, result.confusion)) == len(labels)


def test_errors_are_capped_and_scaling_applies() -> None:
    labels = np.array([3] * 7, dtype=np.uint8)
    x = np.eye(10, dtype=np.uint8)[labels] * 255  # 0..255 pixels, scaled back to 0..1
    result = evaluate(_network(np.float64), x, labels, scale=1 / 255, max_errors=2)
    assert result.confusion[3][5] == 7
    assert [e.index for e in result.errors] == [0, 1]
