"""Artifact stores: bytes by key (base.py has the contract); :func:`open_store` picks
the implementation from ``ARTIFACT_URI``'s scheme."""

from pathlib import Path
from urllib.parse import urlparse

from shared.artifacts.base import ArtifactStore, StoreMisconfigured
from shared.artifacts.local import LocalStore
from shared.artifacts.memory import MemoryStore


def open_store(
    uri: str, *, endpoint_url: str | None = None, region: str | None = None
) -> ArtifactStore:
    """``file:///path`` (or a bare path), ``memory://``, ``s3://BUCKET/PREFIX``.

    ``endpoint_url`` and ``region`` (``S3_ENDPOINT_URL``, ``S3_REGION``) are for
    ``s3://`` only: an S3-compatible server's URL (``None``: AWS) and its region."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme else uri
        if parsed.netloc:  # file://relative/dir: keep what the user wrote
            path = parsed.netloc + parsed.path
        return LocalStore(Path(path))
    if parsed.scheme == "memory":
        return MemoryStore()
    if parsed.scheme == "s3":
        # Imported here, not above: boto3 and a client cost ~0.6 s and ~40 MB, which a
        # file:// deployment never needs. The one kind of import inside a function.
        from shared.artifacts.s3 import S3Store

        return S3Store(uri, endpoint_url=endpoint_url, region=region)
    raise StoreMisconfigured(f"ARTIFACT_URI: unknown scheme {parsed.scheme!r} (file, s3)")
