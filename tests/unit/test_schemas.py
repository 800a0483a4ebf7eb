"""Request shapes: bounds, the nested image form, what must be rejected, and what the
schema tells clients (the page's forms are built from it)."""

import pytest
from pydantic import ValidationError

from shared.schemas.params import InputScaling, Preset, TrainParams
from shared.schemas.predict import PredictRequest
from shared.schemas.sweeps import DEFAULT_VALIDATION_FRACTION, SweepBase, SweepRequest
from shared.sweeps.request import resolve


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


def _search_hints() -> dict[str, dict]:
    properties = TrainParams.model_json_schema()["properties"]
    return {name: field["x-search"] for name, field in properties.items() if "x-search" in field}


def test_every_searchable_fields_range_is_a_sweep_the_server_takes() -> None:
    """The ``x-search`` hints the page's sweep form starts from (low, high, log) lie within
    each field's bounds: searching every ranged field at once, or each alone, is a valid
    sweep by the server's own check, on either preset."""
    hints = _search_hints()
    ranged = {name: hint for name, hint in hints.items() if "low" in hint}
    assert {"eta", "n_hidden"} <= {name for name, hint in hints.items() if hint.get("suggested")}
    assert {"seed", "epochs", "train_size", "validation_fraction"}.isdisjoint(hints)
    space = {name: {k: hint[k] for k in ("low", "high", "log")} for name, hint in ranged.items()}
    for searched in [space, *({name: spec} for name, spec in space.items())]:
        for preset in Preset:
            resolve(SweepRequest.model_validate({"space": searched, "trials": 2}), preset)


def test_a_sweeps_base_says_its_own_validation_fraction() -> None:
    """SweepBase's schema gives the default a sweep really uses, with TrainParams' bounds."""
    field = SweepBase.model_json_schema()["properties"]["validation_fraction"]
    train = TrainParams.model_json_schema()["properties"]["validation_fraction"]
    assert field == {**train, "default": DEFAULT_VALIDATION_FRACTION}
    space = {"eta": {"low": 0.01, "high": 0.1}}
    request = SweepRequest.model_validate({"base": {}, "space": space})
    assert resolve(request).validation_fraction == DEFAULT_VALIDATION_FRACTION
    with pytest.raises(ValidationError):
        SweepBase(validation_fraction=0.6)
