"""Crash-safe file writes: a reader sees the old file or the whole new one, never half."""

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"


def write_atomic(
    path: Path, write: Callable[[BinaryIO], object], *, exclusive: bool = False
) -> None:
    """Call ``write`` on a temp file beside ``path``, fsync it, then move it into place.

    ``exclusive``: link it to its name instead, which fails (``FileExistsError``) if the
    name exists, so that of two writers exactly one succeeds.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)  # atomic and exclusive
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)  # make the rename itself durable


def write_bytes_atomic(path: Path, payload: bytes, *, exclusive: bool = False) -> None:
    write_atomic(path, lambda f: f.write(payload), exclusive=exclusive)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_bytes(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()
