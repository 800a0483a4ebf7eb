"""IDX parsing on tiny files we write, and the download path against a loopback mirror."""

import gzip
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from shared.data import mnist
from tests.procs import mnist_dir


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_tiny_mnist(directory: Path, n_train: int = 6, n_test: int = 4, gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = idx_bytes(rng.integers(0, 256, (n, 28, 28)), mnist.IMAGES_MAGIC)
        labels = idx_bytes(rng.integers(0, 10, n), mnist.LABELS_MAGIC)
        for kind, payload in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{split}-{kind}-ubyte"
            if gz:
                (directory / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (directory / name).write_bytes(payload)


@pytest.mark.parametrize("gz", [True, False])
def test_load_reads_gzipped_and_plain_files(tmp_path: Path, gz: bool) -> None:
    write_tiny_mnist(tmp_path, gz=gz)
    data = mnist.load(tmp_path)
    assert data.train_images.shape == (6, 784) and data.train_images.dtype == np.uint8
    assert data.test_labels.shape == (4,)


def test_parse_keeps_row_major_pixels() -> None:
    image = np.arange(784).reshape(1, 28, 28) % 256
    parsed = mnist.parse_idx(idx_bytes(image, mnist.IMAGES_MAGIC), mnist.IMAGES_MAGIC)
    np.testing.assert_array_equal(parsed[0], image.ravel())


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x00\x00", "truncated header"),
        (idx_bytes(np.zeros(3), mnist.LABELS_MAGIC), "magic number 2049, expected 2051"),
        (idx_bytes(np.zeros((2, 28, 28)), mnist.IMAGES_MAGIC)[:-5], "data bytes"),
        (idx_bytes(np.zeros((2, 27, 28)), mnist.IMAGES_MAGIC), "expected 28x28"),
    ],
)
def test_parse_rejects_bad_files_clearly(payload: bytes, message: str) -> None:
    with pytest.raises(mnist.MnistError, match=message):
        mnist.parse_idx(payload, mnist.IMAGES_MAGIC, "file")


def test_mismatched_counts_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(mnist.MnistError, match="not found"):
        mnist.load(tmp_path)
    write_tiny_mnist(tmp_path)
    labels = idx_bytes(np.zeros(5), mnist.LABELS_MAGIC)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    with pytest.raises(mnist.MnistError, match="6 images but 5 labels"):
        mnist.load(tmp_path)


def test_corrupt_gzip_is_a_clear_error(tmp_path: Path) -> None:
    write_tiny_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(mnist.MnistError, match="corrupt gzip"):
        mnist.load(tmp_path)


@pytest.mark.parametrize(
    "compressed",
    [
        gzip.compress(bytes(range(256)) * 9000),  # 2.2 MB: several chunks
        gzip.compress(b""),
        gzip.compress(b"two ") + gzip.compress(b"members"),  # the trailer counts the last
    ],
    ids=["chunks", "empty", "two-members"],
)
def test_gunzip_matches_the_standard_library(compressed: bytes) -> None:
    assert bytes(mnist.gunzip(compressed)) == gzip.decompress(compressed)


def test_loaded_images_are_read_only(tmp_path: Path) -> None:
    write_tiny_mnist(tmp_path)
    with pytest.raises(ValueError, match="read-only"):
        mnist.load(tmp_path).train_images[0, 0] = 1


def test_checksums_are_those_of_the_shipped_files() -> None:
    sums = mnist_dir() / "SHA256SUMS"
    if not sums.exists():
        pytest.skip("no SHA256SUMS beside the MNIST files")
    listed = dict(reversed(line.split()) for line in sums.read_text().splitlines())
    assert listed == mnist.SHA256


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a folder: a mirror that never leaves the machine."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", root
    server.shutdown()


def test_download_verifies_and_falls_back_to_next_mirror(
    tmp_path: Path, mirror: tuple[str, Path]
) -> None:
    """A mirror serving a wrong file is skipped; the good one's files land intact."""
    url, root = mirror
    source = mnist_dir()
    if mnist.missing_files(source):
        pytest.skip("real MNIST needed for its checksums")
    (root / "good").mkdir()
    (root / "bad").mkdir()
    for name in mnist.FILES.values():
        (root / "good" / f"{name}.gz").write_bytes((source / f"{name}.gz").read_bytes())
        (root / "bad" / f"{name}.gz").write_bytes(gzip.compress(b"not mnist"))
    target = tmp_path / "data"
    mnist.download(target, [url + "missing", url + "bad", url + "good"])
    assert mnist.missing_files(target) == []
    mnist.verify(target)
    assert not list(target.glob(".*"))  # no temp files left behind


def test_download_fails_when_no_mirror_has_it(tmp_path: Path, mirror: tuple[str, Path]) -> None:
    url, _ = mirror
    with pytest.raises(mnist.MnistError, match="could not download"):
        mnist.download(tmp_path, [url])
    assert mnist.missing_files(tmp_path) == list(mnist.FILES.values())


def test_verify_refuses_a_file_that_is_not_mnist(tmp_path: Path) -> None:
    write_tiny_mnist(tmp_path)
    with pytest.raises(mnist.MnistError, match="is not MNIST's"):
        mnist.verify(tmp_path)
