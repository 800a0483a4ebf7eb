"""The numeric core against its definition: gradients by finite differences."""

import numpy as np
import pytest

from shared.ml import mlp


def _problem(rng: np.random.Generator, n: int = 7, features: int = 6, hidden: int = 5):
    weights = mlp.init_weights(features, hidden, 4, rng, np.float64)
    x = rng.uniform(0, 1, size=(n, features))
    y = mlp.onehot(rng.integers(0, 4, size=n), 4, np.float64)
    return weights, x, y


def _cost(w: mlp.Weights, x: np.ndarray, y: np.ndarray, l1: float, l2: float) -> float:
    _, logits = mlp.forward(w, x)
    return mlp.cost(logits, y, w, l1, l2)


@pytest.mark.parametrize(("l1", "l2"), [(0.0, 0.0), (0.3, 0.0), (0.0, 0.2), (0.1, 0.2)])
def test_backward_matches_numerical_gradient(l1: float, l2: float) -> None:
    """The book's "checking gradient" step, with both penalties on."""
    weights, x, y = _problem(np.random.default_rng(0))
    hidden, logits = mlp.forward(weights, x)
    grads = mlp.backward(weights, x, hidden, mlp.sigmoid(logits.copy()), y, l1, l2)
    eps = 1e-5
    for weight, grad in zip(weights.arrays(), grads.arrays(), strict=True):
        numeric = np.zeros_like(weight)
        for i in np.ndindex(weight.shape):
            saved = weight[i]
            weight[i] = saved + eps
            plus = _cost(weights, x, y, l1, l2)
            weight[i] = saved - eps
            minus = _cost(weights, x, y, l1, l2)
            weight[i] = saved
            numeric[i] = (plus - minus) / (2 * eps)
        rel = np.linalg.norm(numeric - grad) / (np.linalg.norm(numeric) + np.linalg.norm(grad))
        assert rel < 1e-7, rel


def test_l1_gradient_is_sign_not_weight() -> None:
    """The book adds ``l1*w``; the derivative of ``l1*|w|`` is ``l1*sign(w)``."""
    weights, x, y = _problem(np.random.default_rng(1))
    hidden, logits = mlp.forward(weights, x)
    out = mlp.sigmoid(logits.copy())
    plain = mlp.backward(weights, x, hidden, out, y, 0.0, 0.0)
    with_l1 = mlp.backward(weights, x, hidden, out, y, 0.5, 0.0)
    np.testing.assert_allclose(with_l1.w1 - plain.w1, 0.5 * np.sign(weights.w1))
    np.testing.assert_allclose(with_l1.b1, plain.b1)  # biases are not penalised


def test_cost_matches_book_formula_and_stays_finite() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, size=(5, 10))
    y = mlp.onehot(rng.integers(0, 10, 5), 10, np.float64)
    weights = mlp.init_weights(3, 2, 10, rng, np.float64)
    a = 1 / (1 + np.exp(-logits))
    book = np.sum(-y * np.log(a) - (1 - y) * np.log(1 - a))
    assert mlp.cost(logits, y, weights, 0.0, 0.0) == pytest.approx(book, rel=1e-10)
    huge = np.full((1, 10), 200.0, dtype=np.float32)
    assert np.isfinite(mlp.cost(huge, y[:1], weights, 0.0, 0.0))


def test_sigmoid_saturates_without_nan() -> None:
    z = np.array([-1000.0, 0.0, 1000.0], dtype=np.float32)
    np.testing.assert_array_equal(mlp.sigmoid(z), [0.0, 0.5, 1.0])


def test_update_applies_book_momentum() -> None:
    """``w -= eta*grad + alpha*previous_step``; the returned step is ``eta*grad``."""
    w = mlp.Weights(np.ones((2, 2)), np.ones(2), np.ones((1, 2)), np.ones(1))
    grads = mlp.Weights(*(np.full_like(a, 2.0) for a in w.arrays()))
    previous = mlp.Weights(*(np.full_like(a, 10.0) for a in w.arrays()))
    step = mlp.update(w, grads, previous, eta=0.1, alpha=0.5)
    np.testing.assert_allclose(step.w1, 0.2)
    np.testing.assert_allclose(w.w1, 1 - 0.2 - 5.0)


def test_predict_proba_rows_sum_to_one() -> None:
    weights, x, _ = _problem(np.random.default_rng(3))
    proba = mlp.predict_proba(weights, x)
    assert proba.shape == (7, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize(("dtype", "bias"), [(np.float32, -200.0), (np.float64, -2000.0)])
def test_predict_proba_when_every_output_rounds_to_zero(dtype: type, bias: float) -> None:
    """Every logit below about -88 (float32) or -745 (float64): each sigmoid is 0 and
    the row would be 0/0 (NaN, answered as null). Such rows take the ratios
    sigmoid(z_k)/sum in log space; the other rows of the batch are as before."""
    offsets = np.array([0.0, -1.0, -2.0, -3.0])
    w1, b1, w2 = np.zeros((5, 6)), np.zeros(5), np.zeros((4, 5))
    w1[0, 0], b1[0], w2[:, 0] = 40.0, -20.0, -2 * bias
    weights = mlp.Weights(w1, b1, w2, bias + offsets).astype(dtype)
    x = np.zeros((4, 6), dtype)
    x[:, 0] = [0.0, 0.1, 0.9, 1.0]  # hidden unit 0 off for the first two rows, on after
    proba = mlp.predict_proba(weights, x)
    assert proba.dtype == dtype and np.isfinite(proba).all()
    # far below 0, sigmoid(z) ~ exp(z): the ratios of exp(offsets)
    np.testing.assert_allclose(proba[:2], [np.exp(offsets) / np.exp(offsets).sum()] * 2, rtol=1e-5)
    _, logits = mlp.forward(weights.astype(np.float64), x.astype(np.float64))
    ordinary = 1 / (1 + np.exp(-logits[2:]))
    np.testing.assert_allclose(proba[2:], ordinary / ordinary.sum(axis=1, keepdims=True), rtol=1e-6)
