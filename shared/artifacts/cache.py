"""Each host's private cache of verified bytes, addressed by their sha256.

With a network store (``s3://``) an API host keeps the model files it has verified on
its own disk (``CACHE_DIR``), so a restart, or a model that left the in-memory LRU,
does not cost a round trip, and a model already cached keeps serving while the store
is away. Entries are named by the sha256 of their content, which the registry records:
a lookup verifies the bytes again (a damaged entry is dropped and fetched anew), and a
model deleted and imported again under its id, with other weights, is another entry.
The oldest-used entries go once the cache holds more than ``max_bytes``.
"""

import logging
import os
import re
from pathlib import Path

from shared.files import sha256_bytes, write_bytes_atomic

log = logging.getLogger(__name__)

MAX_BYTES = 2 * 1024**3
"""Bytes a cache keeps at most (about 150 of the largest models)."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class VerifiedCache:
    def __init__(self, root: Path, max_bytes: int = MAX_BYTES) -> None:
        self.root, self.max_bytes = Path(root), max_bytes

    def _path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError("not a sha256")
        return self.root / f"{sha256}.bin"

    def get(self, sha256: str) -> bytes | None:
        """The bytes whose sha256 this is, if cached and intact."""
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if sha256_bytes(data) != sha256:
            log.warning("cache entry %s is damaged; dropping it", path.name)
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # recently used
        return data

    def put(self, sha256: str, data: bytes) -> None:
        """Keep verified bytes (the caller checked ``sha256``); never fails the caller."""
        try:
            write_bytes_atomic(self._path(sha256), data)
            self._trim()
        except OSError as exc:  # a full or read-only cache costs speed, not a request
            log.warning("could not cache %s: %s", sha256[:12], exc)

    def _trim(self) -> None:
        entries = sorted(self.root.glob("*.bin"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in entries)
        for path in entries:
            if total <= self.max_bytes:
                return
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
