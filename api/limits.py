"""Limits on request bodies, enforced in ASGI middleware before FastAPI reads a byte:
the size of one body, the time to receive it, and the bytes of all bodies in flight.

Why all three (issue 17, point 8): a size limit alone lets 150 connections that each
declare 4 MB and send all but the last byte hold +607 MB for as long as they stay open
(``bench/slow_bodies.py``), and 200 connections that trickle a byte every 2 s are held
for ever: uvicorn's h11 protocol has no timeout once the headers are in (its
keep-alive timer is cancelled by every byte that arrives).

- **Size** (``MAX_BODY_BYTES``): 413 at once from ``Content-Length``, or as soon as a
  streamed body crosses it.
- **Time** (``BODY_TIMEOUT_SECONDS``): from the app's first read of the body to its last
  byte. Past it, 408 with a JSON ``detail`` and the connection is closed. A deadline
  rather than a minimum rate, because it bounds how long a connection can hold its
  share of memory whatever it sends: a minimum rate lets a client that sends just above
  it hold a 4 MB body for as long as the rate allows (4 MB at 1 KB/s: over an hour).
  The default 30 s takes a 4 MB body at 140 KB/s or faster, and a one-image
  ``/predict`` (3 KB) at 100 bytes/s.
- **Bytes in flight** (``MAX_BODY_BYTES_IN_FLIGHT``): a process-wide budget of the bytes
  of bodies held by requests, reserved from ``Content-Length`` before anything is read
  (or counted as a body without one arrives) and given back when the request ends,
  however it ends (answer, refusal, disconnect, exception). A body that would not fit
  is refused at once, before its bytes are buffered: **503 with ``Retry-After``**, not
  413, because nothing is wrong with the request (the same body fits a moment later)
  and the condition is the server's; clients and proxies retry a 503 after
  ``Retry-After``, while a 413 tells them the body is too large, which is false.
  Bodies of at most :data:`FREE_BYTES` are not charged: every body of the service but
  a ``/predict`` batch, an image upload or a model import is smaller (a one-image
  ``/predict`` is about 3 KB, a job or a sweep well under 1 KB), so normal requests
  keep working while large hostile ones fill the budget; what small ones can hold is
  bounded by the connections, as uvicorn's own buffer is (below). The default, 64 MiB,
  is 16 bodies of the default ``MAX_BODY_BYTES``: 150 slow 4 MB bodies then cost the
  process +68 MB (``bench/slow_bodies.py``; target +150 MB).

A response that starts before the request's body has been read to its end (a route
that does not read a body, an early error) carries ``Connection: close``: otherwise
uvicorn would go on reading and discarding the rest of the body for as long as the
client sends it, with no timeout.

**What uvicorn holds by itself** (measured, ``bench/slow_bodies.py``, "uvicorn alone"):
its h11 protocol appends what arrives to the request's buffer and stops reading from
the socket above 64 KiB (``HIGH_WATER_LIMIT``) until the app calls ``receive``; one
read is at most 256 KiB. 150 connections sending 4 MB to an app that never reads
held 108-144 KB each (+16 to +21 MB, three runs); the rest waits in the kernel's socket
buffers, outside the process. So the app's reads, which these limits govern, are where
bodies pile up.

A refusal from inside a read is sent by this middleware itself (JSON, ``Connection:
close``), and the app's read then sees ``http.disconnect``; whatever the app does about
that (FastAPI answers 400, a route raises) is dropped, as the client has its answer.
"""

import json
import logging
from collections.abc import Iterable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import count_rejected

log = logging.getLogger(__name__)

FREE_BYTES = 16 * 1024
"""Bodies up to this size are not charged to the bytes-in-flight budget."""
RETRY_AFTER_SECONDS = 5
"""``Retry-After`` of a 503 for a full budget: normal bodies come and go in well under
a second; a held one is let go within ``BODY_TIMEOUT_SECONDS``."""


def charge(size: int) -> int:
    """What a body of ``size`` bytes costs the budget: nothing up to :data:`FREE_BYTES`."""
    return size if size > FREE_BYTES else 0


class BodyBudget:
    """The bytes of request bodies this process holds at once, up to ``limit``.

    Used from the one event loop of the process only: :meth:`take` and :meth:`give`
    never await, so no other request runs between the check and the update.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes if they fit; False (and nothing reserved) if not."""
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope["headers"]}


class BodyLimits:
    """ASGI middleware: the size, time and bytes-in-flight limits of request bodies."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, timeout_seconds: float, budget: BodyBudget
    ) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.timeout_seconds, self.budget = timeout_seconds, budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await _Exchange(self, scope, receive, send).run()


class _Exchange:
    """One request and its answer, as the limits see them."""

    def __init__(self, limits: BodyLimits, scope: Scope, receive: Receive, send: Send) -> None:
        self.limits, self.scope = limits, scope
        self._receive, self._send = receive, send
        headers = _headers(scope)
        length = headers.get(b"content-length", b"")
        self.declared = int(length) if length.isdigit() else None
        self.ended = b"transfer-encoding" not in headers and not self.declared
        """The body has been read to its end (or there is none)."""
        self.seen = 0
        self.reserved = 0
        self.deadline: float | None = None
        self.started = self.completed = False  # the response (the app's or ours)
        self.answered = False  # refused here: the app's reads and answer are cut off

    def _too_large(self) -> str:
        return f"request body larger than {self.limits.max_bytes} bytes"

    async def run(self) -> None:
        if self.declared is not None and self.declared > self.limits.max_bytes:
            await self.refuse(413, "body", self._too_large())
            return
        try:
            if not self.reserve(self.declared or 0):
                await self.refuse_busy()
                return
            await self.limits.app(self.scope, self.receive, self.send)
        except Exception:
            if not self.answered:
                raise
            log.debug("after a refused body, the app raised", exc_info=True)
        finally:
            self.limits.budget.give(self.reserved)

    def reserve(self, size: int) -> bool:
        """Hold what a body of ``size`` bytes costs, beyond what is held already."""
        need = charge(size)
        if need <= self.reserved:
            return True
        if not self.limits.budget.take(need - self.reserved):
            return False
        self.reserved = need
        return True

    async def receive(self) -> Message:
        if self.answered:
            return {"type": "http.disconnect"}
        if self.ended:  # e.g. an event stream waiting for the client to leave
            return await self._receive()
        if self.deadline is None:
            self.deadline = anyio.current_time() + self.limits.timeout_seconds
        with anyio.CancelScope(deadline=self.deadline) as scope:
            message = await self._receive()
        if scope.cancelled_caught:
            detail = f"request body not received within {self.limits.timeout_seconds:g} s"
            await self.refuse(408, "body_timeout", detail)
            return {"type": "http.disconnect"}
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limits.max_bytes:
                await self.refuse(413, "body", self._too_large())
                return {"type": "http.disconnect"}
            if not self.reserve(self.seen):
                await self.refuse_busy()
                return {"type": "http.disconnect"}
            if not message.get("more_body", False):
                self.ended = True
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
            if not self.ended:
                message = {**message, "headers": _closing(message.get("headers", ()))}
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.completed = True
        await self._send(message)

    async def refuse_busy(self) -> None:
        await self.refuse(
            503,
            "body_budget",
            "too many large request bodies in flight; retry later",
            [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
        )

    async def refuse(
        self, status: int, reason: str, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        """Answer ``status`` with a JSON ``detail`` and close the connection; an answer
        the app had started already is ended instead (its ``Connection: close`` was
        added when it started, as the body was not in yet)."""
        count_rejected(reason)
        self.answered = True
        if self.completed:
            return
        if self.started:
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        body = json.dumps({"detail": detail}).encode()
        start = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *headers,
        ]
        await self._send({"type": "http.response.start", "status": status, "headers": start})
        await self._send({"type": "http.response.body", "body": body})


def _closing(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    kept = [(name, value) for name, value in headers if name.lower() != b"connection"]
    return [*kept, (b"connection", b"close")]
