"""Request shapes: bounds, the nested image form, and what must be rejected."""

import pytest
from pydantic import ValidationError

from shared.schemas import InputScaling, PredictRequest, TrainParams


def test_defaults_are_the_books_run() -> None:
    p = TrainParams()
    assert (p.n_hidden, p.l1, p.l2, p.epochs, p.eta, p.alpha) == (50, 0.0, 0.1, 1000, 0.001, 0.001)
    assert (p.decrease_const, p.minibatches, p.shuffle, p.seed) == (0.00001, 50, True, 1)
    assert p.lr_schedule == "compound" and p.input_scaling is InputScaling.none


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", -1),
        ("epochs", 0),
        ("epochs", 10**6),
        ("n_hidden", 10**9),
        ("minibatches", 0),
        ("eta", 0),
        ("alpha", 1.0),
        ("validation_fraction", 0.9),
        ("lr_schedule", "cosine"),
        ("bogus", 1),
    ],
)
def test_out_of_range_params_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        TrainParams.model_validate({field: value})
    assert field in str(info.value)


def test_more_minibatches_than_samples() -> None:
    with pytest.raises(ValidationError, match="exceeds training samples"):
        TrainParams(train_size=100, minibatches=200)


def test_nested_image_is_flattened_row_major() -> None:
    nested = [[r * 28 % 256 for _ in range(28)] for r in range(28)]
    req = PredictRequest.model_validate({"pixels": nested})
    assert req.pixels is not None and len(req.pixels) == 784
    assert req.pixels[28] == 28.0 and req.pixels[27] == 0.0


@pytest.mark.parametrize(
    "body",
    [
        {"pixels": [0] * 783},
        {"pixels": [0] * 785},
        {"pixels": [0] * 783 + [256]},
        {"pixels": [0] * 783 + [-1]},
        {"pixels": [0] * 783 + ["1"]},
        {"pixels": [0] * 783 + [None]},
        {"pixels": [0] * 783 + [True]},
        {"pixels": [0] * 783 + [float("nan")]},
        {"pixels": [0] * 783 + [float("inf")]},
        {"pixels": [[0] * 28] * 27 + [[0] * 27]},
        {"pixels": {"a": 1}},
        {"images": []},
        {"pixels": [0] * 784, "images": [[0] * 784]},
        {},
    ],
)
def test_bad_images_are_rejected(body: dict) -> None:
    with pytest.raises(ValidationError):
        PredictRequest.model_validate(body)
