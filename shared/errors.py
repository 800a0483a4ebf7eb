"""What a client may be told about a failure: its kind, not the server's layout.

A job's ``error`` and the API's 503s reach anyone who can read them. File paths
(``MNIST_DIR``, ``MODEL_DIR``), host names and ports (the Redis address) tell an
outsider how the deployment is laid out and help an operator nothing that the logs,
which keep the whole exception with the job id, don't already. :func:`public_error`
turns an exception into the short message that goes out instead.
"""

import errno
import re
from typing import ClassVar

MAX_LENGTH = 300
"""Longest message handed out; an exception's text can be arbitrarily long."""


class Unavailable(RuntimeError):
    """Something the service needs is missing or unreachable (MNIST's files, the model
    store): clients are told :attr:`public`, the log gets the whole message."""

    public: ClassVar[str] = "a resource the service needs is unavailable"


_STORAGE = {
    errno.EROFS: "storage error: read-only file system",
    errno.ENOSPC: "storage full",
    errno.EDQUOT: "storage full",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
"""Storage failures an operator fixes (remount, free space, ownership), by errno."""

_PATHISH = re.compile(r"""[^\s'"()\[\]{},;=<>]*/[^\s'"()\[\]{},;=<>]*""")
"""A token with a slash in it: a path or a URL (``3/10`` is let through below)."""
_ADDRESS = re.compile(
    r"\[[0-9A-Fa-f:.]+\](?::\d{1,5})?"  # [::1]:6379
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b"  # 127.0.0.1:6379
    r"|\b(?=[\w.-]*[A-Za-z])[\w.-]+:\d{1,5}\b"  # redis:6379, localhost:6390
)


def _path_or_url(match: re.Match[str]) -> str:
    token = match.group(0)
    if "://" in token:
        return "<url>"
    return "<path>" if re.search(r"[A-Za-z_~.]", token) else token


def sanitise(message: str) -> str:
    """``message`` with paths, URLs and network addresses replaced, and shortened."""
    text = _ADDRESS.sub("<address>", _PATHISH.sub(_path_or_url, message))
    return text if len(text) <= MAX_LENGTH else text[:MAX_LENGTH] + "..."


def public_error(exc: BaseException) -> str:
    """A short account of ``exc`` for clients: what kind of failure, no paths or addresses.

    Log the exception itself (with the job id) beside handing this out.
    """
    if isinstance(exc, Unavailable):
        return exc.public
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError) and exc.errno in _STORAGE:
        return _STORAGE[exc.errno]
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"storage error: {exc.strerror.lower()}"
    message = sanitise(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
