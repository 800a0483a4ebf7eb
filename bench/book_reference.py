"""The book's NeuralNetMLP (Raschka, *Python Machine Learning*, 1st ed., ch. 12), as a
baseline to measure against: NOT used by the service.

A re-statement of the published algorithm with the published data layout and costs,
kept deliberately as the book does it: float64 throughout, samples in columns,
a column (and row) of ones stacked onto every mini-batch's inputs (and hidden
activations), ``scipy.special.expit`` for the sigmoid, the whole training set
re-indexed (copied) on every shuffle, the global NumPy random state, the compounding
learning-rate decay, and the printed edition's regularisation gradient (``(l1 + l2) * w``).

    .venv/bin/python bench/book_reference.py --epochs 5      # seconds per epoch
    .venv/bin/python bench/book_reference.py --epochs 1000   # the book's full run (~11 min)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class BookNeuralNetMLP:
    """One hidden layer, sigmoid everywhere, the book's hyper-parameter names."""

    def __init__(
        self,
        n_output: int,
        n_features: int,
        n_hidden: int = 30,
        l1: float = 0.0,
        l2: float = 0.0,
        epochs: int = 500,
        eta: float = 0.001,
        alpha: float = 0.0,
        decrease_const: float = 0.0,
        shuffle: bool = True,
        minibatches: int = 1,
        random_state: int | None = None,
    ) -> None:
        np.random.seed(random_state)  # the book seeds the global generator
        self.n_output, self.n_features, self.n_hidden = n_output, n_features, n_hidden
        # weights carry their bias in column 0
        self.w1 = np.random.uniform(-1.0, 1.0, size=n_hidden * (n_features + 1)).reshape(
            n_hidden, n_features + 1
        )
        self.w2 = np.random.uniform(-1.0, 1.0, size=n_output * (n_hidden + 1)).reshape(
            n_output, n_hidden + 1
        )
        self.l1, self.l2 = l1, l2
        self.epochs, self.eta, self.alpha = epochs, eta, alpha
        self.decrease_const, self.shuffle, self.minibatches = decrease_const, shuffle, minibatches
        self.cost_: list[float] = []
        self.epoch_seconds: list[float] = []

    @staticmethod
    def _with_ones(a: np.ndarray, axis: int) -> np.ndarray:
        """A new float64 array: ``a`` with a leading column (axis=1) or row (axis=0) of ones."""
        if axis == 1:
            out = np.ones((a.shape[0], a.shape[1] + 1))
            out[:, 1:] = a
        else:
            out = np.ones((a.shape[0] + 1, a.shape[1]))
            out[1:, :] = a
        return out

    def _feedforward(self, x: np.ndarray):
        a1 = self._with_ones(x, axis=1)  # (n, features+1)
        z2 = self.w1.dot(a1.T)  # (hidden, n)
        a2 = self._with_ones(expit(z2), axis=0)  # (hidden+1, n)
        z3 = self.w2.dot(a2)  # (outputs, n)
        return a1, z2, a2, z3, expit(z3)

    def _cost(self, y_enc: np.ndarray, output: np.ndarray) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            data = np.sum(-y_enc * np.log(output) - (1.0 - y_enc) * np.log(1.0 - output))
        w1, w2 = self.w1[:, 1:], self.w2[:, 1:]
        l1 = (self.l1 / 2.0) * (np.abs(w1).sum() + np.abs(w2).sum())
        l2 = (self.l2 / 2.0) * (np.sum(w1**2) + np.sum(w2**2))
        return float(data + l1 + l2)

    def _gradient(self, a1, a2, a3, z2, y_enc):
        sigma3 = a3 - y_enc
        sg = expit(self._with_ones(z2, axis=0))
        sigma2 = (self.w2.T.dot(sigma3) * (sg * (1.0 - sg)))[1:, :]
        grad1 = sigma2.dot(a1)
        grad2 = sigma3.dot(a2.T)
        # the printed edition's penalty gradient: (l1 + l2) * w, biases excluded
        grad1[:, 1:] += self.w1[:, 1:] * (self.l1 + self.l2)
        grad2[:, 1:] += self.w2[:, 1:] * (self.l1 + self.l2)
        return grad1, grad2

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self._feedforward(x)[3], axis=0)

    def epochs_iter(self, x: np.ndarray, y: np.ndarray) -> Iterator[int]:
        """The book's ``fit`` loop, yielding the number of epochs done after each one."""
        x_data = x.copy()
        y_enc = np.zeros((self.n_output, y.shape[0]))
        y_enc[y, np.arange(y.shape[0])] = 1.0
        prev1, prev2 = np.zeros(self.w1.shape), np.zeros(self.w2.shape)
        for i in range(self.epochs):
            started = time.perf_counter()
            self.eta /= 1 + self.decrease_const * i  # compounds, as in the book's code
            if self.shuffle:
                order = np.random.permutation(y.shape[0])
                x_data, y_enc = x_data[order], y_enc[:, order]
            for idx in np.array_split(range(y.shape[0]), self.minibatches):
                a1, z2, a2, _, a3 = self._feedforward(x_data[idx])
                self.cost_.append(self._cost(y_enc[:, idx], a3))
                grad1, grad2 = self._gradient(a1, a2, a3, z2, y_enc[:, idx])
                delta1, delta2 = self.eta * grad1, self.eta * grad2
                self.w1 -= delta1 + self.alpha * prev1
                self.w2 -= delta2 + self.alpha * prev2
                prev1, prev2 = delta1, delta2
            self.epoch_seconds.append(time.perf_counter() - started)
            yield i + 1

    def fit(self, x: np.ndarray, y: np.ndarray) -> BookNeuralNetMLP:
        for _ in self.epochs_iter(x, y):
            pass
        return self


BOOK_SETTINGS = dict(
    n_output=10,
    n_features=784,
    n_hidden=50,
    l2=0.1,
    l1=0.0,
    epochs=1000,
    eta=0.001,
    alpha=0.001,
    decrease_const=0.00001,
    minibatches=50,
    shuffle=True,
    random_state=1,
)


def main() -> None:
    from bench.common import load_mnist, median

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    data = load_mnist()
    nn = BookNeuralNetMLP(**(BOOK_SETTINGS | {"epochs": args.epochs}))
    started = time.perf_counter()
    nn.fit(data.train_images, data.train_labels)
    wall = time.perf_counter() - started
    train_acc = float(np.mean(nn.predict(data.train_images) == data.train_labels))
    test_acc = float(np.mean(nn.predict(data.test_images) == data.test_labels))
    print(
        f"book NeuralNetMLP, {args.epochs} epochs: {wall:.1f} s wall, "
        f"median {median(nn.epoch_seconds):.3f} s/epoch, "
        f"train {train_acc:.2%}, test {test_acc:.2%}"
    )


if __name__ == "__main__":
    main()
