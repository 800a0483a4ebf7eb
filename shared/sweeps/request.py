"""A sweep request checked and resolved into the parameters every trial starts from."""

import itertools
import math
from typing import Any, cast, get_args

from pydantic import ValidationError

from shared.ml import job_memory
from shared.schemas.params import Preset, TrainParams, with_preset
from shared.schemas.sweeps import (
    DEFAULT_VALIDATION_FRACTION,
    ChoiceSpace,
    RangeSpace,
    Sampler,
    SpaceParam,
    SweepRequest,
)


class SweepInvalid(ValueError):
    """The request cannot be run; ``errors`` are 422 entries naming the fields."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e['loc']}: {e['msg']}" for e in errors))
        self.errors = errors


def _error(loc: tuple[str | int, ...], msg: str, value: object = None) -> dict[str, Any]:
    return {"loc": ("body", *loc), "msg": msg, "type": "value_error", "input": value}


def numeric_kind(name: str) -> type | None:
    """``int`` or ``float`` for a numeric TrainParams field, else ``None``."""
    annotation = TrainParams.model_fields[name].annotation
    kinds = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    if bool in kinds:
        return None
    if int in kinds:
        return int
    if float in kinds:
        return float
    return None


def _space_values(spec: SpaceParam) -> list[Any]:
    return [spec.low, spec.high] if isinstance(spec, RangeSpace) else list(spec.choices)


def _check_space(
    name: str, spec: SpaceParam, base: TrainParams, sampler: Sampler
) -> list[dict[str, Any]]:
    """What is wrong with searching ``name`` as ``spec`` (nothing: ``[]``)."""
    loc: tuple[str, ...] = ("space", name)
    kind = numeric_kind(name)
    if isinstance(spec, RangeSpace):
        if sampler is Sampler.grid:
            return [_error(loc, f"{name}: the grid sampler takes choices only")]
        if kind is None:
            return [_error(loc, f"{name} is not numeric: give it as {{'choices': [...]}}")]
        if spec.low > spec.high:
            return [_error(loc, f"{name}: low ({spec.low}) > high ({spec.high})")]
        if kind is int and not all(float(v).is_integer() for v in (spec.low, spec.high)):
            return [_error(loc, f"{name} is an integer field: low and high must be integers")]
        if spec.log and spec.low <= 0:
            return [_error(loc, f"{name}: a log scale needs low > 0")]
    errors = []
    if name == "validation_fraction" and min(_space_values(spec)) <= 0:
        errors.append(_error(loc, "validation_fraction must be > 0 in a sweep"))
    for value in _space_values(spec):
        try:
            TrainParams.model_validate({**base.model_dump(), name: value})
        except ValidationError as exc:
            first = exc.errors()[0]
            errors.append(_error(loc, f"{name}={value!r} is out of bounds: {first['msg']}", value))
            break
    return errors


def resolve(request: SweepRequest, preset: Preset | None = None) -> TrainParams:
    """The hyper-parameters every trial starts from, after checking the request.

    Raises :class:`SweepInvalid` naming each field that is wrong: unknown in the
    space, also set in ``base``, out of the field's own bounds, ``low > high``, a
    range on a grid, ``validation_fraction`` not > 0, more trials than the grid.
    """
    given = request.base.model_dump(exclude_unset=True) if request.base else {}
    given.pop("early_stopping", None)
    errors = []
    for name in request.space:
        if name not in TrainParams.model_fields:
            errors.append(_error(("space", name), f"{name} is not a training parameter"))
        elif name in given:
            errors.append(_error(("space", name), f"{name} is set in base too: keep one"))
    fraction = given.get("validation_fraction")
    if fraction is not None and fraction <= 0:
        errors.append(
            _error(
                ("base", "validation_fraction"),
                "validation_fraction must be > 0 in a sweep: trials are chosen by "
                "validation accuracy, never by the test set",
                fraction,
            )
        )
    if "validation_fraction" not in given and "validation_fraction" not in request.space:
        given["validation_fraction"] = DEFAULT_VALIDATION_FRACTION
    if errors:
        raise SweepInvalid(errors)
    try:
        base = with_preset(preset, TrainParams.model_validate(given))
    except ValidationError as exc:
        raise SweepInvalid(
            [_error(("base", *e["loc"]), e["msg"], e.get("input")) for e in exc.errors()]
        ) from None
    for name, spec in request.space.items():
        errors += _check_space(name, spec, base, request.sampler)
    if request.sampler is Sampler.grid and not errors:
        size = math.prod(len(cast(ChoiceSpace, s).choices) for s in request.space.values())
        if request.trials > size:
            errors.append(
                _error(("trials",), f"trials ({request.trials}) > the grid's size ({size})")
            )
    if errors:
        raise SweepInvalid(errors)
    return base


SIZING = ("n_hidden", "minibatches", "train_size", "dtype", "validation_fraction")
"""The searched fields a trial's memory depends on (shared/ml/job_memory.py)."""


def _extremes(spec: SpaceParam) -> list[Any]:
    values = _space_values(spec)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return sorted({min(values), max(values)})
    return list(dict.fromkeys(values))


def check_memory(request: SweepRequest, base: TrainParams, limit_mb: float) -> None:
    """Refuse (:class:`SweepInvalid`) a space any of whose trials could need more than
    ``limit_mb`` in its worker: every trial must pass the check ``POST /jobs`` makes.
    The estimate grows or shrinks monotonically with each sizing field, so the corners
    of the space (each field at its extremes) bound every trial."""
    searched = {name: _extremes(spec) for name, spec in request.space.items() if name in SIZING}
    worst, need = None, 0.0
    for corner in itertools.product(*searched.values()):
        try:
            params = TrainParams.model_validate(
                {**base.model_dump(), **dict(zip(searched, corner, strict=True))}
            )
        except ValidationError:
            continue  # a corner no trial can be (minibatches beyond the samples)
        estimate = job_memory.estimate_mb(params)
        if estimate > need:
            worst, need = params, estimate
    if worst is None or need <= limit_mb:
        return
    errors = []
    for error in job_memory.too_big(worst, limit_mb):
        field = cast(tuple[str, ...], error["loc"])[-1]
        errors.append({**error, "loc": ("body", "space", field)} if field in searched else error)
    raise SweepInvalid(errors)
