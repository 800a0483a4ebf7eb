"""The artifact store: bytes by key, and nothing about where they live.

Model files, their checksums, checkpoints and users' corrections are artifacts. Every
module above this package reaches them through :class:`ArtifactStore` and a key such as
``<model id>.npz`` or ``feedback/<id>.json``; none of them opens, lists or deletes a
path. The idea is httpx's transports and MLflow's artifact repositories: one narrow
interface, an implementation per kind of storage (``local``: a directory, the
default; ``memory``: for unit tests; ``s3``: an S3-compatible object store), chosen
by the scheme of ``ARTIFACT_URI`` (:func:`shared.artifacts.open_store`).

What every implementation promises:

- ``put`` is atomic: a reader sees no object or the whole object, never part of one;
  with ``if_absent=True`` it is also exclusive (a second writer of the key gets
  :class:`ArtifactExists`, whatever the timing).
- ``get`` returns exactly the bytes put; with ``max_bytes`` it refuses a larger
  object (:class:`ArtifactTooLarge`) before reading it.
- ``delete`` of a missing key is not an error (deletion is retried after crashes).
- ``list(prefix)`` names every complete object under ``prefix``, sorted; never a
  temp file or a write in progress.
- Faults of the storage itself (a server away, a timeout) raise
  :class:`StoreUnavailable`, which callers may retry; a key that is not there,
  :class:`ArtifactNotFound`.

Bytes are not trusted because of where they came from: callers verify what they read
(a sha256 recorded elsewhere, then the one validator of the kind of artifact).
"""

import re
from abc import ABC, abstractmethod

from shared.errors import Unavailable

KEY_PATTERN = re.compile(r"^(?!.*\.\.)(?!/)[A-Za-z0-9][A-Za-z0-9._/-]{0,255}$")
"""Keys are relative, slash-separated names of letters, digits, ``.``, ``_``, ``-``;
no ``..``, no leading slash: a key can never name anything outside its store."""


class ArtifactError(Exception):
    """Base of the store's own errors."""


class ArtifactNotFound(ArtifactError, LookupError):
    """No object under this key."""


class ArtifactExists(ArtifactError):
    """``put(..., if_absent=True)`` on a key that already holds an object."""


class ArtifactTooLarge(ArtifactError):
    """``get(..., max_bytes=...)`` on a larger object: refused before reading it."""

    def __init__(self, key: str, size: int, limit: int) -> None:
        super().__init__(f"{key}: {size} bytes, more than {limit}")
        self.size, self.limit = size, limit


class StoreUnavailable(ArtifactError, Unavailable):
    """The storage did not answer or failed (a network store away, a timeout): worth a
    retry."""

    public = "the model store is unavailable"


class StoreMisconfigured(ArtifactError):
    """The store cannot work as configured (wrong credentials, no such bucket or folder):
    a process refuses to start with this message."""


def check_key(key: str) -> str:
    if not KEY_PATTERN.match(key):
        raise ValueError(f"not an artifact key: {key!r}")
    return key


class ArtifactStore(ABC):
    """Bytes by key. Implementations are thread-safe; see the module for the contract."""

    uri: str
    """Where the store is, for logs (never sent to clients)."""

    @abstractmethod
    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None: ...

    @abstractmethod
    def get(self, key: str, *, max_bytes: int | None = None) -> bytes: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]: ...

    def check(self) -> None:  # noqa: B027  (most stores have nothing to check)
        """At start: raise :class:`StoreMisconfigured` (one clear line) or
        :class:`StoreUnavailable` if the store cannot be used as configured."""

    def remove_stale(self) -> int:
        """Remove what crashed writers left behind; the number removed. Stores whose
        writes cannot leave anything behind have nothing to do."""
        return 0


class Prefixed(ArtifactStore):
    """A view of another store under ``prefix`` (``feedback/``): keys are relative to it."""

    def __init__(self, inner: ArtifactStore, prefix: str) -> None:
        if not prefix.endswith("/"):
            raise ValueError("a prefix ends with '/'")
        self.inner, self.prefix = inner, check_key(prefix)
        self.uri = f"{inner.uri.rstrip('/')}/{prefix}"

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        self.inner.put(self.prefix + check_key(key), data, if_absent=if_absent)

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        return self.inner.get(self.prefix + check_key(key), max_bytes=max_bytes)

    def delete(self, key: str) -> None:
        self.inner.delete(self.prefix + check_key(key))

    def exists(self, key: str) -> bool:
        return self.inner.exists(self.prefix + check_key(key))

    def list(self, prefix: str = "") -> list[str]:
        return [key[len(self.prefix) :] for key in self.inner.list(self.prefix + prefix)]

    def check(self) -> None:
        self.inner.check()
