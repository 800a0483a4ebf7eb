"""Artifacts as objects in an S3-compatible store (``s3://BUCKET/PREFIX`` URIs).

One boto3 client per store, made from a private session: boto3's clients are safe to
share between threads, its sessions (and the module-level default one) are not. The
endpoint comes from the caller (``S3_ENDPOINT_URL``; ``None`` means AWS); credentials
come from boto3's default chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, a
profile, an instance role...) unless a session is given.

How the contract of base.py is kept:

- ``put`` is one ``PutObject``: S3 makes an object visible whole or not at all.
  ``if_absent`` sends ``If-None-Match: *``; the server refuses an existing key with
  412, or a concurrent conditional write of the same key with 409, so exactly one
  writer wins. If botocore retried our own put (its answer was lost) the 412 may be
  about our own object: then the object is read back and, holding our bytes, counts
  as our write.
- ``get`` looks at the response's ``Content-Length`` before reading the body.
- Errors are translated, with messages that name neither the endpoint nor any address
  (they may reach clients; the chained botocore exception, for logs, has them):
  transport failures, timeouts, 5xx and throttling that outlast botocore's retries
  are :class:`StoreUnavailable`; refused credentials, a missing bucket or missing
  credentials are :class:`StoreMisconfigured`.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from shared.artifacts.base import (
    ArtifactError,
    ArtifactExists,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTooLarge,
    StoreMisconfigured,
    StoreUnavailable,
    check_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONNECT_TIMEOUT = 2.0
"""Seconds to open a connection: milliseconds on a LAN, a TLS handshake to a distant
AWS region well under a second; a host that does not answer is given up on quickly."""

READ_TIMEOUT = 10.0
"""Seconds of silence on an open connection (not a whole transfer): S3's first byte
comes in about 0.1 s, so a server silent for 10 s is stuck, not slow."""

MAX_ATTEMPTS = 3
"""Attempts per call, the first included (botocore's ``standard`` mode: connection
errors, timeouts, 5xx and throttling are retried after 0-1 s, then 0-2 s, jittered).
A server that refuses connections fails a call in about 3 s, one that is cut off in
about 3 x CONNECT_TIMEOUT + 3 s; the callers decide what to do beyond that."""

MAX_POOL_CONNECTIONS = 40
"""Connections kept to the server: one per thread of anyio's default thread pool
(40), through which async code calls the store, so none waits for a connection."""

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NOT_FOUND = {"NoSuchKey", "NotFound", "404"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_WRONG_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
_DENIED = {"AccessDenied", "403"}
_UNAVAILABLE = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "429"}
_TRANSIENT = (BotoConnectionError, HTTPClientError, IncompleteReadError, ChecksumError)
"""Transport failures: refused or reset connections, timeouts, a body cut short."""
_NO_CREDENTIALS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)


class S3Store(ArtifactStore):
    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        session: boto3.session.Session | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.bucket, self.prefix = parse_uri(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}"
        config = Config(
            region_name=region or None,  # an empty setting is no setting
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": max_attempts},
            max_pool_connections=MAX_POOL_CONNECTIONS,
            # Checksums only where the operation requires one: botocore's default
            # (since 1.36) sends CRC headers and chunked uploads that several
            # S3-compatible servers refuse. Callers verify a sha256 of what they read.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = session or boto3.session.Session()
        self.client: S3Client = session.client(
            "s3", endpoint_url=endpoint_url or None, config=config
        )

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        name = self._key(key)
        with self._errors():
            if not if_absent:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=data)
                return
            try:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*")
                return
            except ClientError as exc:
                if error_code(exc) not in _CONFLICT:
                    raise
                retried = retry_attempts(exc) > 0
        if retried and self._holds(key, data):
            return  # our first attempt wrote it; only its answer was lost
        raise ArtifactExists(key)

    def _holds(self, key: str, data: bytes) -> bool:
        try:
            return self.get(key, max_bytes=len(data)) == data
        except (ArtifactNotFound, ArtifactTooLarge):
            return False

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        name = self._key(key)
        with self._errors(not_found=key):
            response = self.client.get_object(Bucket=self.bucket, Key=name)
            body = response["Body"]
            size = response["ContentLength"]
            if max_bytes is not None and size > max_bytes:
                body.close()  # the connection is dropped, the body never read
                raise ArtifactTooLarge(key, size, max_bytes)
            with body:
                return body.read()

    def delete(self, key: str) -> None:
        name = self._key(key)
        with self._errors():
            self.client.delete_object(Bucket=self.bucket, Key=name)  # missing: 204 too

    def exists(self, key: str) -> bool:
        name = self._key(key)
        try:
            with self._errors(not_found=key):
                self.client.head_object(Bucket=self.bucket, Key=name)
        except ArtifactNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        keys = []
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for entry in page.get("Contents", []):
                    name = entry.get("Key", "")
                    if name.endswith("/"):  # a "folder" some consoles create: no object
                        continue
                    keys.append(name[len(self.prefix) :])
        return sorted(keys)

    def check(self) -> None:
        """List one key: proves the endpoint answers, the credentials are accepted and
        the bucket exists (a HEAD would answer a bare 403/404 that cannot tell which)."""
        with self._errors():
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)

    @contextmanager
    def _errors(self, not_found: str | None = None) -> Iterator[None]:
        """Translate botocore's exceptions into the store's (see the module)."""
        try:
            yield
        except ClientError as exc:
            code = error_code(exc)
            if not_found is not None and code in _NOT_FOUND:
                raise ArtifactNotFound(not_found) from None
            raise translate(exc, self.bucket) from exc
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"object store unavailable ({type(exc).__name__})") from exc
        except _NO_CREDENTIALS as exc:
            raise StoreMisconfigured(
                "no credentials for the object store (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY)"
            ) from exc
        except BotoCoreError as exc:
            raise ArtifactError(f"object store client error ({type(exc).__name__})") from exc


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` as ``(bucket, "PREFIX/")``; the prefix may be empty."""
    if not uri.startswith("s3://"):
        raise StoreMisconfigured(f"ARTIFACT_URI {uri!r}: not an s3:// URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket):
        raise StoreMisconfigured(f"ARTIFACT_URI: {bucket!r} is not a valid bucket name")
    prefix = prefix.strip("/")
    if prefix:
        prefix += "/"
        try:
            check_key(prefix)
        except ValueError:
            raise StoreMisconfigured(f"ARTIFACT_URI: {prefix!r} is not a valid prefix") from None
    return bucket, prefix


def error_code(exc: ClientError) -> str:
    """The S3 error code, or the HTTP status for answers without a body (HEAD)."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return error.get("Code") or str(status)


def retry_attempts(exc: ClientError) -> int:
    return exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)


def translate(exc: ClientError, bucket: str) -> ArtifactError:
    """What an S3 error answer means for the caller; one line, no address."""
    code = error_code(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code == "NoSuchBucket":
        return StoreMisconfigured(f"bucket {bucket} does not exist")
    if code in _WRONG_CREDENTIALS:
        return StoreMisconfigured("wrong credentials for the object store")
    if code in _DENIED:
        return StoreMisconfigured(f"these credentials may not use bucket {bucket}")
    if status >= 500 or code in _UNAVAILABLE:
        return StoreUnavailable(f"object store unavailable ({code})")
    return ArtifactError(f"object store refused the request ({code})")
