"""Artifacts as files in a directory (``file://`` URIs, the default): today's
``MODEL_DIR`` layout, so an existing folder keeps working unchanged.

A key is a relative path. Writes go to a temp file beside the target, are fsynced and
renamed into place (then the directory is fsynced), so a reader sees the old file or
the whole new one; an exclusive write (``if_absent``) links the temp file to its name,
which fails if the name exists, so two writers can never both succeed. A crashed
writer leaves only a hidden temp file, which :meth:`LocalStore.remove_stale` deletes
once it is older than any write takes.

A disk's own faults (read-only, full, permission denied) are raised as the ``OSError``
the OS gave: retrying does not mend them, and their errno says what an operator must
fix (shared/errors.py turns it into a public message).
"""

import logging
import os
import time
from pathlib import Path

from shared.artifacts.base import (
    ArtifactExists,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTooLarge,
    StoreMisconfigured,
    check_key,
)
from shared.files import TMP_SUFFIX, fsync_dir, write_bytes_atomic

log = logging.getLogger(__name__)

STALE_TEMP_SECONDS = 3600.0
"""Age after which a temp file is a crashed writer's leftover: no write takes
anywhere near an hour between creating and renaming its temp file."""


class LocalStore(ArtifactStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.uri = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        try:
            write_bytes_atomic(self._path(key), data, exclusive=if_absent)
        except FileExistsError:
            raise ArtifactExists(key) from None

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        try:
            with self._path(key).open("rb") as f:
                if max_bytes is None:
                    return f.read()
                size = os.fstat(f.fileno()).st_size
                if size > max_bytes:
                    raise ArtifactTooLarge(key, size, max_bytes)
                data = f.read(max_bytes + 1)  # the file may have grown since fstat
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactNotFound(key) from None
        if len(data) > max_bytes:
            raise ArtifactTooLarge(key, len(data), max_bytes)
        return data

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        fsync_dir(self._path(key).parent)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            base = Path(dirpath).relative_to(self.root)
            for name in filenames:
                if name.startswith("."):  # temp files of writes in progress
                    continue
                key = name if base == Path(".") else f"{base.as_posix()}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreMisconfigured(
                f"artifact store {self.uri}: cannot create the folder ({exc.strerror})"
            ) from None
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StoreMisconfigured(f"artifact store {self.uri}: the folder is not readable")

    def remove_stale(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Delete temp files left by writers that crashed before their rename. Only old
        ones: a younger one may be a write in progress in another process."""
        removed = 0
        cutoff = time.time() - older_than
        for tmp in self.root.rglob(f".*{TMP_SUFFIX}"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("removed %d stale temp files from %s", removed, self.root)
        return removed
