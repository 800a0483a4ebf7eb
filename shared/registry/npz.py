"""Reading an ``.npz`` without trusting it.

``np.load`` believes what a file says: a 1 MB archive whose member inflates to a
gigabyte, or an ``.npy`` header that declares 10^12 rows, is memory it hands out
before any check runs. :class:`Archive` checks first and reads after: the zip
directory (a bounded number of entries, members exactly as expected, each once, not
encrypted, stored or deflated, declared sizes within bounds and consistent with
their compressed sizes), then each member's ``.npy`` header (read through a cap: numpy
reads a header's whole declared length before it checks it), its dtype and shape,
and the size they imply against the declared one, and only then reads exactly that
many bytes and one more, so a member that inflates beyond what it declared cannot
grow memory. Nothing is ever unpickled. Whatever a malformed file makes ``zipfile``,
``zlib`` or numpy's header parser raise becomes :class:`Invalid`, never a crash.
"""

import io
import math
import struct
import threading
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import IO

import numpy as np
from numpy.lib import format as npy

MAX_MEMBER_BYTES = 64 * 1024 * 1024
"""Largest decompressed member read."""
MAX_TOTAL_BYTES = 128 * 1024 * 1024
"""Largest decompressed archive read, all members together."""
MAX_TEXT_CHARS = 1_000_000
"""Longest string member (a model's JSON metadata is a few kB, at most ~300 kB)."""
MAX_ENTRIES = 16
"""Most central-directory entries an archive may hold (a model has five)."""
MAX_HEADER_BYTES = 10_000
"""Longest ``.npy`` header (numpy's own limit; a model's are 128 bytes)."""
FLOATS = (np.dtype("<f4"), np.dtype("<f8"))
"""The dtypes the service computes in (little-endian float32 and float64)."""
FLOAT32_MAX = float(np.finfo(np.float32).max)

_CENTRAL_ENTRY = b"PK\x01\x02"
_REFUSED_FLAGS = {
    0x0001: "encrypted",
    0x0020: "compressed patched data",
    0x0040: "strongly encrypted",
    0x2000: "with an encrypted directory",
}
_UNREADABLE = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,  # numpy's header errors, UnicodeDecodeError
    RuntimeError,  # zipfile: encryption, NotImplementedError (versions, methods)
    SyntaxError,
    tokenize.TokenError,  # numpy's fallback header parser
    struct.error,
)
"""What ``zipfile``, ``zlib`` and numpy raise on bytes that are not what they claim."""

_Check = Callable[[np.dtype, tuple[int, ...]], None]


class Invalid(ValueError):
    """Not the archive expected: what is wrong, in plain words."""


class TooLarge(Invalid):
    """The archive declares more than it may take: refused before it is read."""


class Archive:
    """The members of an ``.npz`` named ``expected`` (without ``.npy``), checked."""

    def __init__(self, payload: bytes, expected: set[str]) -> None:
        # ZipFile makes an object per directory entry before anything can be checked
        # (a 4 MB file of empty entries costs ~30 MB); it finds each by its signature,
        # so counting signatures bounds them, whatever the end record says
        if payload.count(_CENTRAL_ENTRY) > MAX_ENTRIES:
            raise Invalid(f"more than {MAX_ENTRIES} entries in its zip directory")
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(payload))
        except _UNREADABLE as exc:
            raise Invalid(f"not a readable .npz ({_said(exc)})") from None
        infos = self._zip.infolist()
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise Invalid("an array appears twice")
        found = {name.removesuffix(".npy") for name in names}
        if found != expected or not all(name.endswith(".npy") for name in names):
            raise Invalid(f"expected arrays {sorted(expected)}, found members {_shown(names)}")
        total = 0
        for info in infos:
            name = info.filename
            for flag, what in _REFUSED_FLAGS.items():
                if info.flag_bits & flag:
                    raise Invalid(f"{name} is {what}")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise Invalid(f"{name}: unsupported compression")
            if info.file_size > MAX_MEMBER_BYTES:
                raise TooLarge(
                    f"{name} declares {info.file_size:,} bytes, more than {MAX_MEMBER_BYTES:,}"
                )
            if info.compress_size > _most_compressed(info.compress_type, info.file_size):
                raise Invalid(f"{name} holds more data than its declared size")
            total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise TooLarge(
                f"the arrays declare {total:,} bytes in all, more than {MAX_TOTAL_BYTES:,}"
            )
        self._sizes = {info.filename.removesuffix(".npy"): info.file_size for info in infos}

    def __enter__(self) -> "Archive":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._zip.close()

    def _read(self, name: str, check: _Check) -> np.ndarray:
        try:
            with self._zip.open(f"{name}.npy") as stream:
                dtype, shape, order_f, header_bytes = _header(stream, name)
                check(dtype, shape)
                if order_f:
                    raise Invalid(f"{name} is stored in Fortran order")
                count = math.prod(shape)
                nbytes = count * dtype.itemsize
                declared = self._sizes[name] - header_bytes
                if nbytes > declared:
                    raise Invalid(f"{name}: its header promises more than the archive holds")
                if nbytes < declared:
                    raise Invalid(f"{name}: the archive holds more than its header declares")
                data = stream.read(nbytes)  # what both the header and the directory say
                if len(data) != nbytes or stream.read(1):
                    raise Invalid(f"{name}: its data does not match its header")
        except Invalid:
            raise
        except _UNREADABLE as exc:
            raise Invalid(f"{name}: unreadable ({_said(exc)})") from None
        return np.frombuffer(data, dtype=dtype, count=count).reshape(shape)

    def text(self, name: str) -> str:
        """A 0-d unicode string member (a JSON document)."""

        def check(dtype: np.dtype, shape: tuple[int, ...]) -> None:
            if dtype.kind != "U" or shape != ():
                raise Invalid(f"{name} is not a string")
            if dtype.itemsize // 4 > MAX_TEXT_CHARS:
                raise TooLarge(
                    f"{name} declares {dtype.itemsize // 4:,} characters, "
                    f"more than {MAX_TEXT_CHARS:,}"
                )

        return str(self._read(name, check)[()])

    def floats(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 or float64 array of exactly ``shape`` whose values are finite, and
        finite in float32 too (the API serves in float32)."""

        def check(dtype: np.dtype, found: tuple[int, ...]) -> None:
            if dtype not in FLOATS and dtype.newbyteorder("<") not in FLOATS:
                raise Invalid(f"{name} has dtype {dtype}, not float32 or float64")
            if dtype.byteorder == ">":
                raise Invalid(f"{name} is big-endian")
            if found != shape:
                raise Invalid(f"{name} has shape {found}, expected {shape}")

        array = self._read(name, check)
        if not np.isfinite(array).all():
            raise Invalid(f"{name} has values that are not finite")
        if array.dtype == np.float64 and np.abs(array).max(initial=0.0) > FLOAT32_MAX:
            raise Invalid(f"{name} has values beyond float32's range")
        return array


class _Capped:
    """A stream that refuses to be read past ``limit`` bytes: numpy reads the whole
    length a header declares (up to 4 GB) before it compares it with its limit."""

    def __init__(self, stream: IO[bytes], limit: int, name: str) -> None:
        self._stream, self._limit, self._name = stream, limit, name
        self.used = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0 or self.used + size > self._limit:
            raise Invalid(
                f"{self._name}: its .npy header is longer than {MAX_HEADER_BYTES:,} bytes"
            )
        data = self._stream.read(size)
        self.used += len(data)
        return data


_HEADER_PARSER = threading.Lock()
"""numpy parses a header with ``ast.literal_eval``, and CPython 3.11's AST constructor is
not safe in two threads at once: concurrent imports (the API's thread pool) once raised
``SystemError: AST constructor recursion depth mismatch``. A header is 128 bytes, so
parsing them one at a time costs nothing."""


def _header(stream: IO[bytes], name: str) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """The dtype, shape and order an ``.npy`` header declares (never an object dtype),
    and the header's length in bytes."""
    capped = _Capped(stream, 6 + 2 + 4 + MAX_HEADER_BYTES, name)
    try:
        with _HEADER_PARSER:
            version = npy.read_magic(capped)
            if version == (1, 0):
                shape, order_f, dtype = npy.read_array_header_1_0(
                    capped, max_header_size=MAX_HEADER_BYTES
                )
            elif version == (2, 0):
                shape, order_f, dtype = npy.read_array_header_2_0(
                    capped, max_header_size=MAX_HEADER_BYTES
                )
            else:
                raise Invalid(f"{name}: unsupported .npy version {version}")
    except Invalid:
        raise
    except _UNREADABLE as exc:
        raise Invalid(f"{name}: not an .npy array ({_said(exc)})") from None
    if dtype.hasobject:
        raise Invalid(f"{name} holds Python objects")
    return dtype, tuple(shape), bool(order_f), capped.used


def _most_compressed(method: int, size: int) -> int:
    """The most compressed bytes ``size`` bytes can need: equal when stored; for
    deflate, above zlib's ``deflateBound`` (stored blocks cost 5 bytes per 16 KB)."""
    if method == zipfile.ZIP_STORED:
        return size
    return size + size // 8 + size // 64 + 64


def _said(exc: BaseException) -> str:
    """An exception in a few words: its text can quote the file (a header)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _shown(names: Iterable[str]) -> str:
    """Names from the file, each cut short: the answer quotes them."""
    return str(sorted(name if len(name) <= 40 else name[:37] + "..." for name in names))
