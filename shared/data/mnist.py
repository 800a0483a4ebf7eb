"""MNIST from the standard IDX files: read, verify, download.

IDX is a big-endian header (magic number, then one uint32 per dimension)
followed by uint8 data. Images stay uint8 (47 MB for the training set); the
trainer converts per mini-batch.
"""

import gzip
import hashlib
import io
import logging
import threading
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import Unavailable
from shared.files import write_bytes_atomic

log = logging.getLogger(__name__)

LABELS_MAGIC = 2049
IMAGES_MAGIC = 2051

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
"""sha256 of each file's decompressed content, so any compression verifies."""


class MnistError(Unavailable):
    """A missing, truncated or malformed MNIST file."""

    public = "MNIST data unavailable"


@dataclass(frozen=True)
class Mnist:
    train_images: np.ndarray  # (60000, 784) uint8
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray  # (10000, 784) uint8
    test_labels: np.ndarray  # (10000,) uint8


def parse_idx(data: bytes | bytearray, expected_magic: int, name: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes into a read-only uint8 array (a view), images flattened to rows."""
    if len(data) < 8:
        raise MnistError(f"{name}: truncated header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise MnistError(f"{name}: magic number {magic}, expected {expected_magic}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistError(f"{name}: truncated header ({len(data)} bytes)")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if expected_magic == IMAGES_MAGIC and dims[1:] != [28, 28]:
        raise MnistError(f"{name}: images are {dims[1:]}, expected 28x28")
    size = int(np.prod(dims))
    if len(data) - header != size:
        raise MnistError(
            f"{name}: {len(data) - header} data bytes, the header promises {size} ({dims})"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header)
    array.flags.writeable = False  # shared by every job of the process
    return array.reshape(dims[0], -1) if ndim == 3 else array


def read_idx_bytes(path: Path) -> bytes | bytearray:
    """The decompressed content of ``path`` or ``path.gz``."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.exists():
            raw = candidate.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                try:
                    return gunzip(raw)
                except (OSError, EOFError) as exc:
                    raise MnistError(f"{candidate}: corrupt gzip ({exc})") from exc
            return raw
    raise MnistError(f"{path}(.gz) not found")


def gunzip(raw: bytes) -> bytes | bytearray:
    """Decompressed straight into a buffer of the size the gzip trailer states, instead
    of ``gzip.decompress``'s chunks joined at the end: a worker's peak memory while it
    loads MNIST is then the 47 MB of images, not twice that."""
    size = int.from_bytes(raw[-4:], "little")  # ISIZE: the length modulo 2**32
    out = bytearray(size)
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
        view, filled = memoryview(out), 0
        while filled < size and (n := stream.readinto(view[filled : filled + 2**20])):
            filled += n
        if filled == size and not stream.read(1):
            return out
    return gzip.decompress(raw)  # several members, or over 4 GiB: the general way


def load(directory: Path) -> Mnist:
    """Read the four files (gzipped or not) from ``directory``."""
    arrays = {}
    for key, filename in FILES.items():
        magic = IMAGES_MAGIC if key.endswith("images") else LABELS_MAGIC
        try:
            raw = read_idx_bytes(directory / filename)
        except OSError as exc:
            raise MnistError(f"{filename}: {exc.strerror or exc}") from exc
        arrays[key] = parse_idx(raw, magic, filename)
    for split in ("train", "test"):
        n_images, n_labels = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_images != n_labels:
            raise MnistError(f"{split}: {n_images} images but {n_labels} labels")
    return Mnist(**arrays)


_cache_lock = threading.Lock()
_cache: dict[Path, Mnist] = {}


def load_once(directory: Path) -> Mnist:
    """:func:`load`, once per process and folder (a failure is not kept: the next call
    tries again). The API's readers share this one copy (about 55 MB)."""
    with _cache_lock:
        if directory not in _cache:
            _cache[directory] = load(directory)
        return _cache[directory]


def missing_files(directory: Path) -> list[str]:
    return [
        name
        for name in FILES.values()
        if not (directory / name).exists() and not (directory / f"{name}.gz").exists()
    ]


def download(directory: Path, mirrors: Iterable[str], timeout: float = 60.0) -> None:
    """Fetch every missing file from the first mirror that serves it intact.

    Each download is checked against :data:`SHA256` and written atomically, so an
    interrupted run never leaves a file that looks complete.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name in missing_files(directory):
        errors = []
        for mirror in mirrors:
            url = f"{mirror.rstrip('/')}/{name}.gz"
            log.info("downloading %s", url)
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    payload = response.read()
                digest = hashlib.sha256(gzip.decompress(payload)).hexdigest()
            except (OSError, EOFError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            if digest != SHA256[name]:
                errors.append(f"{url}: sha256 {digest} does not match")
                continue
            write_bytes_atomic(directory / f"{name}.gz", payload)
            log.info("saved %s (%d bytes, sha256 verified)", name, len(payload))
            break
        else:
            raise MnistError(f"could not download {name}: " + "; ".join(errors or ["no mirrors"]))


def verify(directory: Path) -> None:
    """Check every file against its known sha256."""
    for name in FILES.values():
        digest = hashlib.sha256(read_idx_bytes(directory / name)).hexdigest()
        if digest != SHA256[name]:
            raise MnistError(f"{name}: sha256 {digest} is not MNIST's")
