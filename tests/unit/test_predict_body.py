"""The fast /predict body parser must accept exactly what PredictRequest accepts."""

import json
import uuid

import numpy as np
import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api import predict_body
from shared.schemas.predict import PredictRequest

ID = str(uuid.UUID(int=7))
ZEROS = [0] * 784
NESTED = [[row * 9 % 256 for _ in range(28)] for row in range(28)]


def image(value: object = 0, at: int = 0) -> list[object]:
    return [*ZEROS[:at], value, *ZEROS[at + 1 :]]


VALID = [
    {"pixels": list(range(256)) * 3 + [255] * 16},
    {"pixels": image(12.5, 100), "model_id": ID},
    {"pixels": NESTED},
    {"images": [ZEROS, image(255, 783)]},
    {"images": [NESTED, NESTED]},
    {"images": [NESTED, image(3)]},  # mixed forms: the checked path takes it
    {"pixels": image(1e-3), "images": None},
    {"images": [ZEROS] * 1000},
]

INVALID = [
    {"pixels": image(True)},
    {"pixels": image(False, 5)},
    {"pixels": image("7")},
    {"pixels": image(None)},
    {"pixels": image(-1)},
    {"pixels": image(255.5)},
    {"pixels": image(2**70)},
    {"pixels": image([1])},
    {"pixels": ZEROS[:-1]},
    {"pixels": [*ZEROS, 0]},
    {"pixels": [ZEROS[:28]] * 27},
    {"pixels": "0" * 784},
    {"pixels": {}},
    {"pixels": []},
    {"images": []},
    {"images": [ZEROS] * 1001},
    {"images": [ZEROS, ZEROS[:-1]]},
    {"images": ZEROS},
    {"pixels": ZEROS, "images": [ZEROS]},
    {},
    {"pixels": ZEROS, "model_id": "../../etc/passwd"},
    {"pixels": ZEROS, "model_id": 7},
    {"pixels": ZEROS, "extra": 1},
    [ZEROS],
]


def encode(body: object) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize("body", VALID, ids=range(len(VALID)))
def test_valid_bodies_parse_as_pydantic_reads_them(body: object) -> None:
    parsed = predict_body.parse(encode(body))
    expected = PredictRequest.model_validate_json(encode(body))
    rows = [expected.pixels] if expected.pixels is not None else expected.images
    assert parsed.images.dtype == np.float32 and parsed.images.shape == (len(rows), 784)
    np.testing.assert_array_equal(parsed.images, np.array(rows, dtype=np.float32))
    assert parsed.single == (expected.pixels is not None)
    assert parsed.model_id == expected.model_id


@pytest.mark.parametrize("body", INVALID, ids=range(len(INVALID)))
def test_invalid_bodies_are_422_with_pydantic_errors(body: object) -> None:
    with pytest.raises(ValidationError) as expected:
        PredictRequest.model_validate_json(encode(body))
    assert predict_body._fast(encode(body)) is None
    with pytest.raises(RequestValidationError) as raised:
        predict_body.parse(encode(body))
    errors = raised.value.errors()
    assert [e["loc"] for e in errors] == [("body", *e["loc"]) for e in expected.value.errors()]
    assert [e["msg"] for e in errors] == [e["msg"] for e in expected.value.errors()]


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b'{"pixels": [NaN]}', b"[Infinity]"])
def test_undecodable_bodies_are_422(raw: bytes) -> None:
    with pytest.raises(RequestValidationError):
        predict_body.parse(raw)


def test_the_fast_path_takes_the_usual_bodies() -> None:
    """Otherwise the parser is correct but no faster than pydantic."""
    for body in ({"pixels": ZEROS}, {"images": [NESTED] * 3, "model_id": ID}):
        assert predict_body._fast(encode(body)) is not None
