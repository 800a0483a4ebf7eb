"""One validator decides whether bytes are a model (issue: model files are data from
outside): arrays, shapes, dtypes, finite values, metadata; nothing pickled."""

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from shared.artifacts.local import LocalStore
from shared.files import sha256_bytes, write_bytes_atomic
from shared.registry.files import InvalidModel, ModelFiles, parse_model
from tests.models import HIDDEN, meta, npz, weights


def _arrays(**changes: np.ndarray) -> dict[str, np.ndarray]:
    w = weights()
    arrays = {"w1": w.w1, "b1": w.b1, "w2": w.w2, "b2": w.b2}
    arrays.update(changes)
    return arrays


def _meta_json(**changes: object) -> str:
    data = json.loads(meta().model_dump_json())
    data.update(changes)
    return json.dumps(data)


def test_a_valid_model_parses() -> None:
    parsed, parsed_meta = parse_model(npz(_arrays(), _meta_json()))
    assert parsed.w1.shape == (HIDDEN, 784) and parsed_meta.params.n_hidden == HIDDEN


@pytest.mark.parametrize(
    ("arrays", "meta_json", "reason"),
    [
        (_arrays(w1=np.zeros((HIDDEN, 783), np.float32)), _meta_json(), "w1 has shape"),
        (_arrays(w2=np.zeros((9, HIDDEN), np.float32)), _meta_json(), "w2 has shape"),
        (_arrays(b1=np.zeros((HIDDEN + 1,), np.float32)), _meta_json(), "b1 has shape"),
        (_arrays(b2=np.zeros((10,), np.complex64)), _meta_json(), "not float32 or float64"),
        (_arrays(w1=np.zeros((HIDDEN, 784), np.int32)), _meta_json(), "not float32 or float64"),
        (_arrays(b2=np.full((10,), np.nan, np.float32)), _meta_json(), "not finite"),
        (_arrays(b1=np.full((HIDDEN,), np.inf, np.float32)), _meta_json(), "not finite"),
        ({**_arrays(), "extra": np.zeros(1)}, _meta_json(), "expected arrays"),
        ({k: v for k, v in _arrays().items() if k != "b2"}, _meta_json(), "expected arrays"),
        (_arrays(), _meta_json(input_scale="big"), "input_scale"),
        (_arrays(), _meta_json(input_scale=float("nan")), "input_scale"),
        (_arrays(), _meta_json(test_accuracy=float("nan")), "test_accuracy"),
        (_arrays(), _meta_json(test_accuracy=3.0), "test_accuracy"),
        (_arrays(), '{"input_scale": 1.0}', "metadata invalid"),
        (_arrays(), "not json", "metadata invalid"),
    ],
)
def test_what_is_not_a_model_is_refused_with_the_reason(
    arrays: dict[str, np.ndarray], meta_json: str, reason: str
) -> None:
    with pytest.raises(InvalidModel, match=reason):
        parse_model(npz(arrays, meta_json))


def test_hidden_size_must_match_the_metadata() -> None:
    w = weights(hidden=7)
    arrays = {"w1": w.w1, "b1": w.b1, "w2": w.w2, "b2": w.b2}
    with pytest.raises(InvalidModel, match="w1 has shape"):
        parse_model(npz(arrays, _meta_json()))  # metadata says 5 hidden units


def test_pickled_objects_and_garbage_are_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array([{"input_scale": 1.0}], dtype=object), **_arrays())
    with pytest.raises(InvalidModel):
        parse_model(buffer.getvalue())
    with pytest.raises(InvalidModel, match="not a readable"):
        parse_model(b"PK\x03\x04 not really a zip")
    with pytest.raises(InvalidModel):
        parse_model(b"")


def test_a_planted_file_with_a_valid_checksum_is_still_refused(tmp_path: Path) -> None:
    """An operator's copy with a matching .sha256 is checked like anything else."""
    store = ModelFiles(LocalStore(tmp_path))
    model_id = uuid.uuid4()
    payload = npz(_arrays(w1=np.zeros((HIDDEN, 784), np.complex64)), _meta_json())
    write_bytes_atomic(tmp_path / f"{model_id}.npz", payload)
    write_bytes_atomic(tmp_path / f"{model_id}.sha256", f"{sha256_bytes(payload)}  x\n".encode())
    assert store.model_ids() == [model_id]
    with pytest.raises(InvalidModel, match="not float32 or float64"):
        store.load(model_id)
