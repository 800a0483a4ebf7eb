"""The NeuralNetMLP of Raschka's *Python Machine Learning*, ch. 12, as pure NumPy functions.

Shapes: ``x`` is (batch, features); ``w1`` (hidden, features), ``b1`` (hidden,);
``w2`` (outputs, hidden), ``b2`` (outputs,). Biases are separate vectors
rather than the book's stacked column of ones (same mathematics, no copy of
every batch). Costs and gradients are sums over the batch, as in the book.

Every function allocates its results unless it is handed a :class:`Workspace`
(or ``out=``), in which case it writes into those arrays and returns views of
them: the training loop runs thousands of mini-batches without allocating.
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


@dataclass
class Workspace:
    """Work arrays for :func:`forward`, :func:`backward` and :func:`cost`.

    Allocated once for the largest batch of a run; :meth:`rows` gives views for
    a batch of ``n`` rows (leading rows of C-ordered arrays stay contiguous).
    hidden, delta_hidden, deriv: (batch, hidden); logits, delta_out, softplus:
    (batch, outputs); ones: (batch,); grads and penalty: shaped like the weights.
    """

    hidden: np.ndarray
    logits: np.ndarray
    delta_out: np.ndarray
    delta_hidden: np.ndarray
    deriv: np.ndarray
    softplus: np.ndarray
    ones: np.ndarray
    grads: Weights
    penalty: Weights

    @classmethod
    def allocate(cls, w: Weights, batch: int) -> "Workspace":
        dtype = w.w1.dtype
        n_hidden, n_output = w.w1.shape[0], w.w2.shape[0]

        def hidden() -> np.ndarray:
            return np.empty((batch, n_hidden), dtype)

        def output() -> np.ndarray:
            return np.empty((batch, n_output), dtype)

        def like_weights() -> Weights:
            return Weights(*(np.empty_like(a) for a in w.arrays()))

        return cls(
            hidden=hidden(),
            logits=output(),
            delta_out=output(),
            delta_hidden=hidden(),
            deriv=hidden(),
            softplus=output(),
            ones=np.ones(batch, dtype),
            grads=like_weights(),
            penalty=like_weights(),
        )

    def rows(self, n: int) -> "Workspace":
        per_batch = ("hidden", "logits", "delta_out", "delta_hidden", "deriv", "softplus", "ones")
        return Workspace(
            **{name: getattr(self, name)[:n] for name in per_batch},
            grads=self.grads,
            penalty=self.penalty,
        )


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
    """Logistic function, in place on ``z``; exp overflow saturates cleanly to 0.

    Four passes over ``z`` and no temporary: ``1 / (1 + exp(-z))``.
    """
    with np.errstate(over="ignore"):
        np.negative(z, out=z)
        np.exp(z, out=z)
    np.add(z, 1.0, out=z)
    return np.reciprocal(z, out=z)


def forward(
    w: Weights, x: np.ndarray, ws: Workspace | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Hidden activations (batch, hidden) and output logits (batch, outputs).

    With ``ws`` (sized for this batch, see :meth:`Workspace.rows`) the results
    are ``ws.hidden`` and ``ws.logits``.
    """
    hidden = np.matmul(x, w.w1.T, out=None if ws is None else ws.hidden)
    np.add(hidden, w.b1, out=hidden)
    sigmoid(hidden)
    logits = np.matmul(hidden, w.w2.T, out=None if ws is None else ws.logits)
    np.add(logits, w.b2, out=logits)
    return hidden, logits


def onehot(labels: np.ndarray, n_classes: int, dtype: type) -> np.ndarray:
    """(batch, classes) targets, built once per training run."""
    out: np.ndarray = np.zeros((labels.shape[0], n_classes), dtype=dtype)
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


def cost(
    logits: np.ndarray,
    y: np.ndarray,
    w: Weights,
    l1: float,
    l2: float,
    ws: Workspace | None = None,
) -> float:
    """Logistic cost summed over the batch, plus penalties.

    Computed from the logits as ``softplus(z) - y*z``, which equals the book's
    ``-y*log(a) - (1-y)*log(1-a)`` but stays finite when ``a`` rounds to 0 or 1;
    ``softplus(z) = max(z, 0) + log1p(exp(-|z|))`` never overflows, and
    ``sum(max(z, 0)) = (sum(z) + sum(|z|)) / 2``. Arithmetic in the dtype of
    ``logits``, sums accumulated in float64.
    """
    z = logits
    t = np.abs(z, out=np.empty_like(z) if ws is None else ws.softplus)
    relu_sum = 0.5 * (float(z.sum(dtype=np.float64)) + float(t.sum(dtype=np.float64)))
    np.negative(t, out=t)
    np.exp(t, out=t)
    np.log1p(t, out=t)
    data = float(t.sum(dtype=np.float64)) + relu_sum - float(np.vdot(y, z))
    return data + penalty(w, l1, l2)


def backward(
    w: Weights,
    x: np.ndarray,
    hidden: np.ndarray,
    output: np.ndarray,
    y: np.ndarray,
    l1: float,
    l2: float,
    ws: Workspace | None = None,
) -> Weights:
    """Gradients of :func:`cost` by backpropagation (``ws.grads`` with a workspace).

    ``output`` is ``sigmoid(logits)``. The L1 term's gradient is ``l1*sign(w)``
    (the book's code adds ``l1*w``, the L2 form, by mistake). Reads its
    inputs only.
    """
    if ws is None:
        ws = Workspace.allocate(w, len(x))
    delta_out = np.subtract(output, y, out=ws.delta_out)  # (batch, outputs)
    delta_hidden = np.matmul(delta_out, w.w2, out=ws.delta_hidden)  # (batch, hidden)
    deriv = np.subtract(1.0, hidden, out=ws.deriv)
    np.multiply(deriv, hidden, out=deriv)  # sigmoid'(z) = a(1-a)
    np.multiply(delta_hidden, deriv, out=delta_hidden)
    grads = ws.grads
    # bias gradients are column sums, taken as ones @ delta: a BLAS matrix-vector
    # product, several times faster than np.sum(axis=0) on these shapes
    np.matmul(delta_hidden.T, x, out=grads.w1)
    np.matmul(ws.ones, delta_hidden, out=grads.b1)
    np.matmul(delta_out.T, hidden, out=grads.w2)
    np.matmul(ws.ones, delta_out, out=grads.b2)
    for grad, weight, scratch in ((grads.w1, w.w1, ws.penalty.w1), (grads.w2, w.w2, ws.penalty.w2)):
        if l2:
            np.multiply(weight, l2, out=scratch)
            np.add(grad, scratch, out=grad)
        if l1:
            np.sign(weight, out=scratch)
            np.multiply(scratch, l1, out=scratch)
            np.add(grad, scratch, out=grad)
    return grads


def update(
    w: Weights,
    grads: Weights,
    previous: Weights,
    eta: float,
    alpha: float,
    *,
    out: Weights | None = None,
) -> Weights:
    """One step, in place on ``w``: ``w -= eta*grad + alpha*previous``.

    Returns this step's ``eta*grad``, the book's ``delta_w_prev`` for the next
    call, in ``out`` if given; ``out=previous`` replaces the previous step in
    place. Note the book's momentum adds only the previous gradient step, not
    a running velocity.
    """
    step = out if out is not None else Weights(*(np.empty_like(g) for g in grads.arrays()))
    for weight, grad, before, now in zip(
        w.arrays(), grads.arrays(), previous.arrays(), step.arrays(), strict=True
    ):
        if alpha:  # uses `before` before `now` (which may be the same array) is written
            np.multiply(before, alpha, out=now)
            np.subtract(weight, now, out=weight)
        np.multiply(grad, eta, out=now)
        np.subtract(weight, now, out=weight)
    return step


def predict_proba(w: Weights, x: np.ndarray) -> np.ndarray:
    """Output activations (batch, outputs), each row normalised to sum to 1.

    A row whose outputs all round to 0 (every logit below about -88 in float32, -745
    in float64) would be 0/0: its ratios are taken in log space instead,
    ``softmax(log sigmoid(z))``, so that finite logits always give probabilities.
    """
    _, logits = forward(w, x)
    out = sigmoid(logits)
    sums = out.sum(axis=1, keepdims=True)
    vanished = sums[:, 0] == 0
    if vanished.any():  # rare: recompute those rows' logits (sigmoid overwrote them)
        _, z = forward(w, x[vanished])
        log_out = -np.logaddexp(0, -z)  # log sigmoid(z), exact where sigmoid underflows
        log_out -= log_out.max(axis=1, keepdims=True)
        out[vanished] = np.exp(log_out)
        sums[vanished] = out[vanished].sum(axis=1, keepdims=True)
    out /= sums
    return out
