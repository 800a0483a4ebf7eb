"""Model files that lie (issue 17, points 2 and 3), written by hand so that they can
declare anything: a zip directory and ``.npy`` headers are a few structs.

An ``.npz`` is a zip of ``.npy`` members. Each member is a local header, its data
(stored or raw-deflated) and, in the central directory at the end, an entry that
repeats its name, sizes and CRC; ``np.load`` and ``zipfile`` believe the directory.
Gigabytes of zeros deflate about 1,000:1, and deflate blocks ended by a full flush are
independent, so one compressed megabyte of zeros repeated N times is a valid stream of
N MB: a 5 GB bomb costs ~5 MB of file and no more memory than that to make.
"""

from __future__ import annotations

import functools
import io
import struct
import uuid
import zlib
from dataclasses import dataclass, replace

import numpy as np

from shared.schemas.common import utcnow
from shared.schemas.models import ModelMeta
from shared.schemas.params import TrainParams

HIDDEN = 5
STORED, DEFLATED = 0, 8
ENCRYPTED = 0x1
_ZIP64 = 0xFFFFFFFF
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    """One zip member as the directory will describe it. ``size``, ``crc`` and
    ``compressed_size`` default to the truth about ``data``; set them to lie."""

    name: str
    data: bytes
    """The bytes stored in the archive (already deflated when ``method`` is 8)."""
    size: int
    crc: int
    method: int = DEFLATED
    flags: int = 0
    compressed_size: int | None = None


def npy_header(descr: str, shape: tuple[int, ...], version: int = 1) -> bytes:
    """An ``.npy`` header declaring ``descr`` and ``shape``, whatever follows it."""
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    length_format = "<H" if version == 1 else "<I"
    unpadded = 6 + 2 + struct.calcsize(length_format) + len(text) + 1
    text += " " * (-unpadded % 64) + "\n"
    return (
        b"\x93NUMPY"
        + bytes((version, 0))
        + struct.pack(length_format, len(text))
        + text.encode("latin1")
    )


def npy(array: np.ndarray) -> bytes:
    """An array's ``.npy`` bytes, as ``np.save`` writes them."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def member(name: str, raw: bytes, method: int = DEFLATED) -> Member:
    """An honest member holding ``raw``."""
    if method == STORED:
        return Member(name, raw, len(raw), zlib.crc32(raw), STORED)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    return Member(name, deflate.compress(raw) + deflate.flush(), len(raw), zlib.crc32(raw))


@functools.cache
def _zeros_block() -> bytes:
    """1 MB of zeros, raw-deflated and ended by a full flush (1,037 bytes)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    return deflate.compress(bytes(_CHUNK)) + deflate.flush(zlib.Z_FULL_FLUSH)


@functools.cache
def _zeros_crc(prefix: bytes, megabytes: int) -> int:
    crc, chunk = zlib.crc32(prefix), bytes(_CHUNK)
    for _ in range(megabytes):
        crc = zlib.crc32(chunk, crc)
    return crc


def zeros_member(name: str, prefix: bytes, megabytes: int) -> Member:
    """An honest deflated member: ``prefix`` then ``megabytes`` MB of zeros (its CRC
    costs ~0.8 s per GB to compute, once per size)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty final block
    data = head + _zeros_block() * megabytes + tail
    return Member(name, data, len(prefix) + megabytes * _CHUNK, _zeros_crc(prefix, megabytes))


def archive(members: list[Member], comment: bytes = b"") -> bytes:
    """The zip of ``members``, in order, with exactly the directory they describe
    (zip64 sizes where they exceed 32 bits)."""
    local, central = io.BytesIO(), io.BytesIO()
    for m in members:
        csize = len(m.data) if m.compressed_size is None else m.compressed_size
        name = m.name.encode()
        if m.size >= _ZIP64 or csize >= _ZIP64:
            version, sizes = 45, (_ZIP64, _ZIP64)
            extra = struct.pack("<HHQQ", 1, 16, m.size, csize)
        else:
            version, sizes, extra = 20, (csize, m.size), b""
        offset = local.tell()
        fields = (version, m.flags, m.method, 0, 0x21, m.crc, *sizes, len(name), len(extra))
        local.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields) + name + extra + m.data)
        entry = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", version, *fields, 0, 0, 0, 0, offset)
        central.write(entry + name + extra)
    directory = central.getvalue()
    count = min(len(members), 0xFFFF)  # zipfile reads the directory by its size, not this
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), local.tell(), len(comment)
    )
    return local.getvalue() + directory + end + comment


def meta_json(hidden: int = HIDDEN, model_id: uuid.UUID | None = None) -> str:
    """Valid metadata for a model of ``hidden`` units."""
    return ModelMeta(
        created_at=utcnow(),
        job_id=model_id or uuid.uuid4(),
        params=TrainParams(n_hidden=hidden, epochs=1),
        train_accuracy=None,
        test_accuracy=None,
        input_scale=1.0,
    ).model_dump_json()


def arrays(hidden: int = HIDDEN, seed: int = 0) -> dict[str, np.ndarray]:
    """Small valid weights (float32) for ``hidden`` units."""
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.uniform(-0.1, 0.1, (hidden, 784)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": rng.uniform(-0.1, 0.1, (10, hidden)).astype(np.float32),
        "b2": np.zeros(10, np.float32),
    }


def members(hidden: int = HIDDEN, **swap: Member | np.ndarray) -> list[Member]:
    """A valid model's five members, ``meta`` first (as ``np.savez`` orders them), with
    any of them swapped for an array or a hand-made member."""
    raw: dict[str, Member | np.ndarray] = {
        "meta": np.array(meta_json(hidden)),
        **arrays(hidden),
    }
    raw.update(swap)
    return [
        replace(value, name=f"{name}.npy")
        if isinstance(value, Member)
        else member(f"{name}.npy", npy(value))
        for name, value in raw.items()
    ]


def valid(hidden: int = HIDDEN) -> bytes:
    """A valid model file, written by hand."""
    return archive(members(hidden))


def bomb(gigabytes: float, hidden: int = HIDDEN) -> bytes:
    """A valid model but for ``w1``: an honest member of about ``gigabytes`` GB of
    zeros whose header declares every row of it, so that ``np.load`` would inflate
    and allocate all of it. Rows come in multiples of 16,384 (49 MB of float32 rows),
    which keeps the member whole megabytes."""
    rows = max(1, round(gigabytes * 1024 / 49)) * 16_384
    head = npy_header("<f4", (rows, 784))
    return archive(members(hidden, w1=zeros_member("w1", head, rows * 784 * 4 // _CHUNK)))


def liar(megabytes: int, hidden: int = HIDDEN, lie_about_compressed: bool = False) -> bytes:
    """``w1``'s directory entry declares exactly a valid ``w1`` (header and float32
    zeros) while its data inflates to ``megabytes`` MB; the CRC is that of the whole.
    With ``lie_about_compressed`` it also declares only as many compressed bytes as
    its declared size could need, so that the member passes the directory's checks
    and the read itself must stop."""
    head = npy_header("<f4", (hidden, 784))
    declared = len(head) + hidden * 784 * 4
    body = zeros_member("w1", head, megabytes)
    lie = replace(body, size=declared)
    if lie_about_compressed:
        lie = replace(lie, compressed_size=declared + declared // 8)
    return archive(members(hidden, w1=lie))


def huge_header(rows: int = 10**12, hidden: int = HIDDEN) -> bytes:
    """``w1``'s ``.npy`` header declares ``rows`` x 784 float32 (3 TB for 10^12),
    followed by one row of data."""
    raw = npy_header("<f4", (rows, 784)) + bytes(784 * 4)
    return archive(members(hidden, w1=member("w1", raw)))


def from_arrays(hidden: int = HIDDEN, **swap: np.ndarray) -> bytes:
    """A model with some arrays replaced (a wrong dtype, values out of range)."""
    return archive(members(hidden, **swap))
