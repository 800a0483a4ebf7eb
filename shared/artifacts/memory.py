"""An artifact store in a dict: for unit tests, and the reference of the contract."""

import threading

from shared.artifacts.base import (
    ArtifactExists,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTooLarge,
    check_key,
)


class MemoryStore(ArtifactStore):
    def __init__(self) -> None:
        self.uri = "memory://"
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        with self._lock:
            if if_absent and check_key(key) in self._objects:
                raise ArtifactExists(key)
            self._objects[check_key(key)] = bytes(data)

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        with self._lock:
            data = self._objects.get(check_key(key))
        if data is None:
            raise ArtifactNotFound(key)
        if max_bytes is not None and len(data) > max_bytes:
            raise ArtifactTooLarge(key, len(data), max_bytes)
        return data

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(check_key(key), None)

    def exists(self, key: str) -> bool:
        with self._lock:
            return check_key(key) in self._objects

    def list(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(key for key in self._objects if key.startswith(prefix))
