"""Model files are read without trusting them (issue 17, points 2 and 3): hand-built
hostile files (bench/hostile_npz.py) are refused from their zip directory or their
``.npy`` headers before they cost memory, with one exception saying what is wrong
(too large: 413, invalid: 422), and only weights the service can compute with pass.

Memory is measured with ``tracemalloc`` (numpy's and zlib's buffers are traced): a
refusal may allocate at most :data:`BOUND`, far below what each file would inflate to;
:func:`test_the_hostile_files_are_genuine` shows the same measure sees a bomb inflate.
"""

import io
import random
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from bench import hostile_npz as h
from shared.ml import mlp
from shared.registry import npz
from shared.registry.files import InvalidModel, ModelTooLarge, parse_model

BOUND = 8 * 2**20
"""Bytes a refusal may allocate (the bombs here inflate to 16 MB - 5 GB)."""


def refusal(payload: bytes, error: type[InvalidModel], match: str) -> int:
    """Check that ``parse_model`` refuses ``payload`` with exactly ``error`` saying
    ``match`` in a short message; returns the peak it allocated meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(InvalidModel, match=match) as caught:
            parse_model(payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert type(caught.value) is error, f"{type(caught.value).__name__}: {caught.value}"
    assert len(str(caught.value)) < 300
    return peak


def parsed(payload: bytes) -> mlp.Weights:
    return parse_model(payload)[0]


@pytest.fixture(scope="module")
def gigabyte_bomb() -> bytes:
    return h.bomb(1)


def test_the_hostile_files_are_genuine() -> None:
    """The hand-written zips are what they claim: a valid model parses, and a small
    bomb passes zipfile's own CRC check and makes ``np.load`` allocate all of it,
    which ``tracemalloc`` sees."""
    weights = parsed(h.valid())
    np.testing.assert_array_equal(weights.w1, h.arrays()["w1"])
    small = h.bomb(0.05)  # 16,384 rows: 49 MB of float32
    with zipfile.ZipFile(io.BytesIO(small)) as archive:
        assert archive.testzip() is None
    tracemalloc.start()
    try:
        inflated = np.load(io.BytesIO(small))["w1"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert inflated.shape == (16_384, 784) and peak > 49 * 2**20 > BOUND
    del inflated
    refusal(small, InvalidModel, r"w1 has shape \(16384, 784\), expected \(5, 784\)")


def test_a_zip_bomb_is_refused_from_its_directory(gigabyte_bomb: bytes) -> None:
    assert len(gigabyte_bomb) < 1.2 * 2**20  # 1 MB of file ...
    peak = refusal(gigabyte_bomb, ModelTooLarge, "w1.npy declares 1,078,984,832 bytes")
    assert peak < BOUND  # ... that would inflate to 1 GB


def test_sizes_beyond_32_bits_are_read_and_refused() -> None:
    """A zip64 entry declaring 5 GB: its size is read from the extra field."""
    five_gb = replace(h.member("w1", h.npy(h.arrays()["w1"])), size=5 * 2**30)
    payload = h.archive(h.members(w1=five_gb))
    assert refusal(payload, ModelTooLarge, "w1.npy declares 5,368,709,120 bytes") < BOUND


def test_the_arrays_together_are_bounded() -> None:
    """Each member within its limit, all of them beyond the archive's."""
    big = npz.MAX_MEMBER_BYTES
    swap = {name: replace(h.member(name, h.npy(a)), size=big) for name, a in h.arrays().items()}
    payload = h.archive(h.members(**swap))
    assert refusal(payload, ModelTooLarge, "the arrays declare .* bytes in all") < BOUND


@pytest.mark.parametrize(
    ("lie_about_compressed", "reason"),
    [
        (False, "w1.npy holds more data than its declared size"),
        (True, "w1: unreadable \\(BadZipFile: Bad CRC-32"),
    ],
)
def test_a_member_that_inflates_beyond_its_declared_size(
    lie_about_compressed: bool, reason: str
) -> None:
    """The directory says ``w1`` is 15 KB; its data inflates to 256 MB. Refused from
    the directory when its compressed size gives it away; when that lies too, the
    read stops at the declared size (and the CRC of the whole does not match)."""
    payload = h.liar(256, lie_about_compressed=lie_about_compressed)
    assert refusal(payload, InvalidModel, reason) < BOUND


def _long_header(length: int) -> bytes:
    """A version 2.0 ``.npy`` header ``length`` bytes long (spaces), then one float."""
    text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"
    text += b" " * (length - len(text) - 1) + b"\n"
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text + bytes(4)


@pytest.mark.parametrize(
    ("swap", "error", "reason"),
    [
        ({"w1": h.member("w1", h.npy_header("<f4", (10**12, 784)) + bytes(3136))},
         InvalidModel, r"w1 has shape \(1000000000000, 784\), expected \(5, 784\)"),
        ({"b1": h.member("b1", h.npy_header("<f4", (5,)) + bytes(8))},
         InvalidModel, "b1: its header promises more than the archive holds"),
        ({"b1": h.member("b1", h.npy_header("<f4", (5,)) + bytes(20) + bytes(4096))},
         InvalidModel, "b1: the archive holds more than its header declares"),
        ({"meta": h.member("meta", h.npy_header("<U250000000", ()) + bytes(64))},
         ModelTooLarge, "meta declares 250,000,000 characters, more than 1,000,000"),
        ({"meta": h.member("meta", h.npy_header("<U10", (10**12,)) + bytes(64))},
         InvalidModel, "meta is not a string"),
        ({"meta": h.member("meta", _long_header(16 * 2**20))},
         InvalidModel, "meta: its .npy header is longer than 10,000 bytes"),
        ({"b2": h.member("b2", h.npy_header("<f4", (10,), version=3) + bytes(40))},
         InvalidModel, r"b2: unsupported .npy version \(3, 0\)"),
        ({"b2": h.member("b2", h.npy(np.zeros(10, np.float32)).replace(b"False", b"True "))},
         InvalidModel, "b2 is stored in Fortran order"),
        ({"b2": h.member("b2", b"not an npy at all")},
         InvalidModel, "b2: not an .npy array"),
    ],
)  # fmt: skip
def test_headers_are_checked_before_any_array_byte_is_read(
    swap: dict[str, h.Member], error: type[InvalidModel], reason: str
) -> None:
    assert refusal(h.archive(h.members(**swap)), error, reason) < BOUND


def test_a_huge_metadata_string_is_refused_unread() -> None:
    """A 2,000,000-character string really there (8 MB inflated from 8 KB)."""
    payload = h.archive(h.members(meta=h.zeros_member("meta", h.npy_header("<U2000000", ()), 8)))
    assert refusal(payload, ModelTooLarge, "meta declares 2,000,000 characters") < BOUND


def _object_member() -> h.Member:
    """What ``np.save(allow_pickle=True)`` writes for an object array: a pickle."""
    return h.member("w1", h.npy_header("|O", (5, 784)) + b"\x80\x04cos\nsystem\n.")


@pytest.mark.parametrize(
    ("swap", "reason"),
    [
        ({"w1": np.zeros((5, 784), np.float16)}, "w1 has dtype float16, not float32 or float64"),
        ({"w1": np.zeros((5, 784), np.longdouble)}, "w1 has dtype float128"),
        ({"b1": np.zeros(5, np.int32)}, "b1 has dtype int32"),
        ({"b1": np.zeros(5, np.int64)}, "b1 has dtype int64"),
        ({"b1": np.zeros(5, bool)}, "b1 has dtype bool"),
        ({"b2": np.zeros(10, np.complex64)}, "b2 has dtype complex64"),
        ({"b2": np.zeros(10, np.complex128)}, "b2 has dtype complex128"),
        ({"b2": np.zeros(10, "datetime64[s]")}, "b2 has dtype datetime64"),
        ({"b2": np.zeros(10, [("a", "<f4")])}, "b2 has dtype"),
        ({"b2": np.zeros(10, "<U3")}, "b2 has dtype <U3"),
        ({"w2": np.zeros((10, 5), ">f4")}, "w2 is big-endian"),
        ({"w2": np.zeros((10, 5), ">f8")}, "w2 is big-endian"),
        ({"w1": _object_member()}, "w1 holds Python objects"),
        ({"meta": np.zeros(3, np.float32)}, "meta is not a string"),
        ({"meta": np.array(b"{}")}, "meta is not a string"),
    ],
)
def test_only_the_dtypes_the_service_computes_in(
    swap: dict[str, np.ndarray | h.Member], reason: str
) -> None:
    refusal(h.archive(h.members(**swap)), InvalidModel, reason)


@pytest.mark.parametrize("descr", ["<f4", "<f8", "=f4", "=f8"])
def test_float32_and_float64_little_endian_or_native_load(descr: str) -> None:
    arrays = {name: a.astype(descr) for name, a in h.arrays().items()}
    swap = {
        name: h.member(name, h.npy_header(descr, a.shape) + a.tobytes())
        for name, a in arrays.items()
    }
    weights = parsed(h.archive(h.members(**swap)))
    for name, array in arrays.items():
        np.testing.assert_array_equal(getattr(weights, name), array)


F32_MAX = float(np.finfo(np.float32).max)


def _full(name: str, value: float, dtype: type = np.float32) -> dict[str, np.ndarray]:
    """Arrays with ``name`` filled with ``value`` (half of them negated)."""
    array = np.full(h.arrays()[name].shape, value, dtype)
    array.flat[::2] *= -1
    return {name: array}


@pytest.mark.parametrize(
    ("swap", "reason"),
    [
        (_full("w2", 1e39, np.float64), "w2 has values beyond float32's range"),
        (_full("b1", -1e300, np.float64), "b1 has values beyond float32's range"),
        (_full("w1", F32_MAX * 1.0000001, np.float64), "w1 has values beyond float32's range"),
        (_full("b2", np.nan, np.float64), "b2 has values that are not finite"),
        (_full("w1", np.inf), "w1 has values that are not finite"),
        (_full("b2", -np.inf), "b2 has values that are not finite"),
        (_full("w1", 1e36), "the hidden layer could overflow float32"),
        (_full("b1", 3e38), "the hidden layer could overflow float32"),
        (_full("w2", 1e38), "the output layer could overflow float32"),
    ],
)
def test_values_that_cannot_serve(swap: dict[str, np.ndarray], reason: str) -> None:
    refusal(h.from_arrays(**swap), InvalidModel, reason)


def test_large_weights_that_stay_finite_load_and_predict() -> None:
    """The bounds refuse what overflows, not what is merely large: weights of 1e30
    and biases of -1e4 (every output rounds to 0 in float32) give probabilities."""
    swap = {**_full("w1", 1e30), "b2": np.full(10, -1e4, np.float32)}
    swap["b2"][7] = -9_990
    weights = parsed(h.from_arrays(**swap))
    x = np.vstack([np.zeros(784), np.full(784, 255.0)]).astype(np.float32)
    proba = mlp.predict_proba(weights, x)
    assert np.isfinite(proba).all() and (proba.argmax(axis=1) == 7).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def _entries(count: int) -> bytes:
    """An archive of ``count`` empty members (46 bytes of directory each)."""
    return h.archive([h.member(f"{i}", b"", h.STORED) for i in range(count)])


def _named(name: str) -> bytes:
    return h.archive([*h.members()[:4], replace(h.members()[4], name=name)])


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: h.archive([*h.members(), h.member("extra.npy", h.npy(np.zeros(1)))]),
         r"expected arrays .* found members .*'extra.npy'"),
        (lambda: h.archive(h.members()[:4]), "expected arrays"),
        (lambda: h.archive([*h.members(), h.members()[1]]), "an array appears twice"),
        (lambda: _named("b2"), r"found members .*'b2'"),
        (lambda: _named("B2.npy"), "expected arrays"),
        (lambda: _named("../b2.npy"), "expected arrays"),
        (lambda: _named("b" * 10_000 + ".npy"), r"'bbbbb+\.\.\.'"),
        (lambda: _entries(17), "more than 16 entries in its zip directory"),
        (lambda: _entries(90_000), "more than 16 entries in its zip directory"),
    ],
)  # fmt: skip
def test_members_exactly_as_expected(make: Callable[[], bytes], reason: str) -> None:
    """Each of ``meta``, ``w1``, ``b1``, ``w2``, ``b2`` once, nothing else; names from
    the file are quoted cut short; 90,000 entries (4 MB) are refused before zipfile
    makes an object of each."""
    assert refusal(make(), InvalidModel, reason) < BOUND


def _stored_w1(**changes: object) -> bytes:
    w1 = h.member("w1", h.npy(h.arrays()["w1"]), h.STORED)
    return h.archive(h.members(w1=replace(w1, **changes)))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_stored_w1(flags=h.ENCRYPTED), "w1.npy is encrypted"),
        (_stored_w1(flags=0x20), "w1.npy is compressed patched data"),
        (_stored_w1(flags=0x40), "w1.npy is strongly encrypted"),
        (_stored_w1(method=12), "w1.npy: unsupported compression"),  # bzip2
        (_stored_w1(method=14), "w1.npy: unsupported compression"),  # lzma
        (_stored_w1(compressed_size=16_000), "w1.npy holds more data than its declared size"),
        (_stored_w1(crc=0), "w1: unreadable \\(BadZipFile: Bad CRC-32"),
    ],
)
def test_zip_features_the_service_does_not_read(payload: bytes, reason: str) -> None:
    refusal(payload, InvalidModel, reason)


def _stored_valid() -> bytes:
    """A valid model whose members are stored, not deflated."""
    stored = []
    for m in h.members():
        raw = zipfile.ZipFile(io.BytesIO(h.archive([m]))).read(m.name)
        stored.append(replace(m, data=raw, size=len(raw), method=h.STORED))
    return h.archive(stored)


def test_stored_members_load() -> None:
    np.testing.assert_array_equal(parsed(_stored_valid()).w2, h.arrays()["w2"])


def test_corrupted_files_are_refused_never_crash() -> None:
    """Seeded random damage to valid files (stored and deflated, mostly in headers
    and the directory): every outcome is a model or :class:`InvalidModel`. Before,
    zlib errors, encryption and version flags and numpy's header tokenizer gave
    other exceptions (a 500)."""
    rng = random.Random(17)
    originals = [h.valid(), _stored_valid()]
    outcomes = {"model": 0, "refused": 0}
    for original in originals:
        locals_ = [i for i in range(len(original)) if original.startswith(b"PK\x03\x04", i)]
        directory = original.index(b"PK\x01\x02")
        for _ in range(1500):
            damaged = bytearray(original)
            for _ in range(rng.choice((1, 1, 2, 4))):
                where = rng.random()
                if where < 0.4:
                    at = rng.randrange(directory, len(damaged))
                elif where < 0.8:
                    at = min(rng.choice(locals_) + rng.randrange(200), len(damaged) - 1)
                else:
                    at = rng.randrange(len(damaged))
                damaged[at] = rng.randrange(256)
            if rng.random() < 0.05:
                damaged = damaged[: rng.randrange(len(damaged))]
            try:
                parse_model(bytes(damaged))
                outcomes["model"] += 1
            except InvalidModel:
                outcomes["refused"] += 1
    assert outcomes["refused"] > 2000, outcomes
