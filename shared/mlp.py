"""The NeuralNetMLP of Raschka's *Python Machine Learning*, ch. 12, as pure NumPy functions.

Shapes: ``x`` is (batch, features); ``w1`` (hidden, features), ``b1`` (hidden,);
``w2`` (outputs, hidden), ``b2`` (outputs,). Biases are separate vectors
rather than the book's stacked column of ones (same mathematics, no copy of
every batch). Costs and gradients are sums over the batch, as in the book.
"""

from dataclasses import dataclass, fields

import numpy as np


@dataclass
class Weights:
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def arrays(self) -> list[np.ndarray]:
        return [getattr(self, f.name) for f in fields(self)]

    def astype(self, dtype: np.dtype | type) -> "Weights":
        return Weights(*(a.astype(dtype) for a in self.arrays()))

    @classmethod
    def zeros_like(cls, other: "Weights") -> "Weights":
        return cls(*(np.zeros_like(a) for a in other.arrays()))

    @property
    def n_hidden(self) -> int:
        return self.w1.shape[0]


def init_weights(
    n_features: int, n_hidden: int, n_output: int, rng: np.random.Generator, dtype: type
) -> Weights:
    """Uniform in [-1, 1], biases included, as the book initialises them."""

    def uniform(*shape: int) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)

    return Weights(
        uniform(n_hidden, n_features),
        uniform(n_hidden),
        uniform(n_output, n_hidden),
        uniform(n_output),
    )


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, in place on ``z``; exp overflow saturates cleanly to 0."""
    with np.errstate(over="ignore"):
        np.negative(z, out=z)
        np.exp(z, out=z)
    z += 1.0
    return np.reciprocal(z, out=z)


def forward(w: Weights, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hidden activations (batch, hidden) and output logits (batch, outputs)."""
    hidden = x @ w.w1.T
    hidden += w.b1
    sigmoid(hidden)
    logits = hidden @ w.w2.T
    logits += w.b2
    return hidden, logits


def onehot(labels: np.ndarray, n_classes: int, dtype: type) -> np.ndarray:
    """(batch, classes) targets, built once per training run."""
    out = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def penalty(w: Weights, l1: float, l2: float) -> float:
    """``l1*sum|w| + l2/2*sum(w**2)`` over the weights, biases excluded."""
    total = 0.0
    for m in (w.w1, w.w2):
        if l1:
            total += l1 * float(np.abs(m).sum(dtype=np.float64))
        if l2:
            total += 0.5 * l2 * float(np.dot(m.ravel(), m.ravel()))
    return total


def cost(logits: np.ndarray, y: np.ndarray, w: Weights, l1: float, l2: float) -> float:
    """Logistic cost summed over the batch, plus penalties.

    Computed from the logits as ``softplus(z) - y*z``, which equals the book's
    ``-y*log(a) - (1-y)*log(1-a)`` but stays finite when ``a`` rounds to 0 or 1.
    """
    z = logits.astype(np.float64)
    data = float(np.sum(np.logaddexp(0.0, z) - y * z))
    return data + penalty(w, l1, l2)


def backward(
    w: Weights,
    x: np.ndarray,
    hidden: np.ndarray,
    output: np.ndarray,
    y: np.ndarray,
    l1: float,
    l2: float,
) -> Weights:
    """Gradients of :func:`cost` by backpropagation.

    ``output`` is ``sigmoid(logits)``. The L1 term's gradient is ``l1*sign(w)``
    (the book's code adds ``l1*w``, the L2 form, by mistake).
    """
    delta_out = output - y  # (batch, outputs)
    delta_hidden = delta_out @ w.w2
    delta_hidden *= hidden * (1.0 - hidden)  # sigmoid'(z) = a(1-a)
    grads = Weights(
        w1=delta_hidden.T @ x,
        b1=delta_hidden.sum(axis=0),
        w2=delta_out.T @ hidden,
        b2=delta_out.sum(axis=0),
    )
    for grad, weight in ((grads.w1, w.w1), (grads.w2, w.w2)):
        if l2:
            grad += l2 * weight
        if l1:
            grad += l1 * np.sign(weight)
    return grads


def update(w: Weights, grads: Weights, previous: Weights, eta: float, alpha: float) -> Weights:
    """One step, in place on ``w``: ``w -= eta*grad + alpha*previous``.

    Returns this step's ``eta*grad``, the book's ``delta_w_prev`` for the next
    call. Note the book's momentum adds only the previous gradient step, not a
    running velocity.
    """
    step = Weights(*(eta * g for g in grads.arrays()))
    for weight, now, before in zip(w.arrays(), step.arrays(), previous.arrays(), strict=True):
        weight -= now
        if alpha:
            weight -= alpha * before
    return step


def predict_proba(w: Weights, x: np.ndarray) -> np.ndarray:
    """Output activations (batch, outputs), each row normalised to sum to 1."""
    _, logits = forward(w, x)
    out = sigmoid(logits)
    out /= out.sum(axis=1, keepdims=True)
    return out
