"""What clients are told about failures: the kind, never paths or addresses."""

import errno
import logging
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis

from shared.artifacts.local import LocalStore
from shared.data import mnist
from shared.errors import MAX_LENGTH, public_error, sanitise
from shared.registry.files import ModelFileError, ModelFiles
from tests import models
from tests.procs import free_port


def _raised(action) -> BaseException:  # type: ignore[no-untyped-def]
    try:
        action()
    except BaseException as exc:
        return exc
    raise AssertionError("nothing was raised")


def test_missing_mnist_is_named_without_its_folder(tmp_path: Path) -> None:
    exc = _raised(lambda: mnist.load(tmp_path / "secret-layout"))
    assert "secret-layout" in str(exc)  # the raw error names the folder...
    assert public_error(exc) == "MNIST data unavailable"  # ...the client's does not


def test_an_os_error_on_an_mnist_file_is_mnist_unavailable(tmp_path: Path) -> None:
    (tmp_path / "train-images-idx3-ubyte").mkdir()  # there, but not readable as a file
    exc = _raised(lambda: mnist.load(tmp_path))
    assert isinstance(exc, mnist.MnistError) and isinstance(exc.__cause__, OSError)
    assert public_error(exc) == "MNIST data unavailable"


def test_storage_failures_by_kind(tmp_path: Path) -> None:
    full = _raised(lambda: Path("/dev/full").write_bytes(b"x" * 8192))  # a real ENOSPC
    assert isinstance(full, OSError) and full.errno == errno.ENOSPC
    assert public_error(full) == "storage full"
    missing = _raised(lambda: (tmp_path / "models" / "x.npz").read_bytes())
    assert public_error(missing) == "storage error: no such file or directory"
    # Root ignores file modes and mounting needs privileges: these two are built by hand.
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS), "/srv/models/x.npz")
    assert public_error(read_only) == "storage error: read-only file system"
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/srv/models")
    assert public_error(denied) == "permission denied"


def test_redis_unreachable_hides_its_address() -> None:
    port = free_port()
    client = redis.Redis(port=port, socket_connect_timeout=1)
    exc = _raised(client.ping)
    assert str(port) in str(exc)
    assert str(port) not in public_error(exc) and "<address>" in public_error(exc)


def test_memory_and_other_errors(tmp_path: Path) -> None:
    assert public_error(MemoryError("Unable to allocate 3.5 TiB")) == "out of memory"
    shapes = _raised(lambda: np.ones((2, 3)) @ np.ones((2, 3)))
    message = public_error(shapes)
    assert message.startswith("ValueError: matmul: Input operand 1")
    assert public_error(RuntimeError()) == "RuntimeError"
    located = ValueError(f"bad file {tmp_path}/a.npz from redis://:pw@cache:6379/0")
    assert public_error(located) == "ValueError: bad file <path> from <url>"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Error 111 connecting to 127.0.0.1:6390. Connection refused.",
            "Error 111 connecting to <address>. Connection refused.",
        ),
        (
            "Error -2 connecting to redis:6379. Name unknown.",
            "Error -2 connecting to <address>. Name unknown.",
        ),
        ("cannot reach [::1]:6379", "cannot reach <address>"),
        ("open '/work/shared/mnist/t10k-images-idx3-ubyte'", "open '<path>'"),
        ("in data/models/checkpoints", "in <path>"),
        ("~/models/x.npz and ./x and ../y", "<path> and <path> and <path>"),
        ("epoch 3/10 done", "epoch 3/10 done"),
        ("[Errno 2] No such file", "[Errno 2] No such file"),
    ],
)
def test_sanitise(message: str, expected: str) -> None:
    assert sanitise(message) == expected


def test_sanitise_shortens() -> None:
    assert len(sanitise("x" * 10_000)) == MAX_LENGTH + 3


def _saved(tmp_path: Path) -> tuple[ModelFiles, uuid.UUID]:
    store = ModelFiles(LocalStore(tmp_path / "secret-models"))
    model_id = uuid.uuid4()
    store.save(model_id, models.weights(), models.meta(model_id))
    return store, model_id


def test_model_file_errors_name_the_model_not_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, model_id = _saved(tmp_path)
    path = tmp_path / "secret-models" / f"{model_id}.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="shared.registry.files"):
        with pytest.raises(ModelFileError) as changed:
            store.load(model_id)
        assert str(changed.value) == f"model {model_id}: integrity check failed"
        path.unlink()
        with pytest.raises(ModelFileError) as gone:
            store.load(model_id)
        assert str(gone.value) == f"model {model_id}: file missing"
    assert caplog.text.count("secret-models") == 2  # the details stay in the log
