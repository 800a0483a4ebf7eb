"""``POST /models`` refuses hostile files (issue 17, points 2 and 3): 413 for what
declares more than a model may, 422 for what is not a model the service can serve,
with a JSON ``detail`` saying which, never a 500; nothing is written or registered;
weights that pass serve finite probabilities. The files are bench/hostile_npz.py's,
over a real Redis."""

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bench import hostile_npz as h
from shared.config import Settings

OCTETS = {"Content-Type": "application/octet-stream"}
BAD = "not a valid model file: "
BIG = "not an importable model file: "


def _encrypted() -> bytes:
    w1 = h.member("w1", h.npy(h.arrays()["w1"]))
    return h.archive(h.members(w1=replace(w1, flags=h.ENCRYPTED)))


def _huge_meta() -> bytes:
    meta = h.zeros_member("meta", h.npy_header("<U2000000", ()), 8)
    return h.archive(h.members(meta=meta))


def _spread(value: float, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    array = np.full(shape, value, dtype)
    array.flat[::2] *= -1
    return array


HOSTILE: list[tuple[str, Callable[[], bytes], int, str]] = [
    ("1 GB bomb", lambda: h.bomb(1), 413,
     BIG + "w1.npy declares 1,078,984,832 bytes, more than 67,108,864"),
    ("lying directory", lambda: h.liar(256), 422,
     BAD + "w1.npy holds more data than its declared size"),
    ("lying directory and compressed size", lambda: h.liar(256, lie_about_compressed=True), 422,
     BAD + "w1: unreadable (BadZipFile: Bad CRC-32 for file 'w1.npy')"),
    ("10^12 rows", h.huge_header, 422,
     BAD + "w1 has shape (1000000000000, 784), expected (5, 784)"),
    ("2,000,000-character metadata", _huge_meta, 413,
     BIG + "meta declares 2,000,000 characters, more than 1,000,000"),
    ("float16", lambda: h.from_arrays(w1=np.zeros((5, 784), np.float16)), 422,
     BAD + "w1 has dtype float16, not float32 or float64"),
    ("float128", lambda: h.from_arrays(b2=np.zeros(10, np.longdouble)), 422,
     BAD + "b2 has dtype float128, not float32 or float64"),
    ("big-endian", lambda: h.from_arrays(w2=np.zeros((10, 5), ">f4")), 422,
     BAD + "w2 is big-endian"),
    ("beyond float32", lambda: h.from_arrays(w2=_spread(1e39, (10, 5), np.float64)), 422,
     BAD + "w2 has values beyond float32's range"),
    ("overflowing", lambda: h.from_arrays(w1=_spread(1e36, (5, 784))), 422,
     BAD + "weights so large that the hidden layer could overflow float32"),
    ("encrypted", _encrypted, 422, BAD + "w1.npy is encrypted"),
    ("extra member", lambda: h.archive([*h.members(), h.member("x.npy", b"")]), 422,
     BAD + "expected arrays ['b1', 'b2', 'meta', 'w1', 'w2'], found members "
     "['b1.npy', 'b2.npy', 'meta.npy', 'w1.npy', 'w2.npy', 'x.npy']"),
    ("not a zip", lambda: b"PK\x03\x04" + bytes(100), 422,
     BAD + "not a readable .npz (BadZipFile: File is not a zip file)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "status", "detail"),
    [pytest.param(make, status, detail, id=name) for name, make, status, detail in HOSTILE],
)
def test_a_hostile_import_is_refused_with_its_reason(
    client: TestClient, settings: Settings, make: Callable[[], bytes], status: int, detail: str
) -> None:
    payload = make()
    as_body = client.post("/models", content=payload, headers=OCTETS)
    as_file = client.post("/models", files={"file": ("model.npz", payload)})
    for answer in (as_body, as_file):
        assert (answer.status_code, answer.json()) == (status, {"detail": detail})
        assert answer.headers["content-type"] == "application/json"
    assert client.get("/models").json()["total"] == 0
    assert not list(Path(settings.model_dir).glob("*"))  # nothing written


def test_refusals_leave_imports_working(client: TestClient, settings: Settings) -> None:
    """After every kind of refusal, a hand-written valid file (float64 weights) and
    the service's own export import and serve."""
    for _, make, _, _ in HOSTILE[3:]:
        assert client.post("/models", content=make(), headers=OCTETS).status_code in (413, 422)
    as_float64 = {name: a.astype(np.float64) for name, a in h.arrays().items()}
    imported = client.post("/models", content=h.from_arrays(**as_float64), headers=OCTETS)
    assert imported.status_code == 201, imported.text
    model_id = imported.json()["id"]
    assert (Path(settings.model_dir) / f"{model_id}.npz").is_file()  # where refusals wrote nothing
    exported = client.get(f"/models/{model_id}/download").content
    assert client.delete(f"/models/{model_id}").status_code == 204
    assert client.post("/models", content=exported, headers=OCTETS).status_code == 201
    pixels = {"pixels": [float(v % 256) for v in range(784)], "model_id": model_id}
    answer = client.post("/predict", json=pixels)
    assert answer.status_code == 200 and None not in answer.json()["probabilities"]


def test_outputs_that_all_round_to_zero_still_answer_probabilities(client: TestClient) -> None:
    """Finite weights whose every output rounds to 0 in float32 (biases of -1000):
    before, /predict answered 200 with ten nulls."""
    b2 = np.full(10, -1000.0, np.float32)
    b2[3] = -995.0
    imported = client.post("/models", content=h.from_arrays(b2=b2), headers=OCTETS)
    assert imported.status_code == 201, imported.text
    pixels = {"pixels": [float(v % 256) for v in range(784)], "model_id": imported.json()["id"]}
    answer = client.post("/predict", json=pixels)
    assert answer.status_code == 200
    probabilities = answer.json()["probabilities"]
    assert None not in probabilities and np.argmax(probabilities) == 3
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
