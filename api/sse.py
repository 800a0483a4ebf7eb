"""Server-Sent Events by polling: the one loop behind ``/jobs/{id}/events`` and
``/sweeps/{id}/events``.

A stream reads its resource in a worker thread (the stores are sync; the event loop
never blocks), turns what changed since the last read into events, and ends when the
resource has ended, or with an ``error`` event when Redis is away or the resource is
gone. sse-starlette cancels the generator when the client goes.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol, TypeVar

import redis

log = logging.getLogger(__name__)

T = TypeVar("T")
Event = dict[str, str]


class Source(Protocol[T]):
    """What a stream follows."""

    name: str

    def read(self) -> T | None:
        """The resource now, or ``None`` if it is gone (called in a thread)."""

    def events(self, snapshot: T) -> tuple[list[Event], bool]:
        """The events since the last snapshot, and whether the stream ends here."""


def documented(description: str, example: str) -> dict[int | str, dict[str, Any]]:
    """The ``200`` of an events route in OpenAPI: an event stream, shown by ``example``."""
    return {
        200: {"description": description, "content": {"text/event-stream": {"example": example}}}
    }


def error(detail: str) -> Event:
    return {"event": "error", "data": json.dumps({"detail": detail})}


async def follow(source: "Source[T]", poll: float) -> AsyncIterator[Event]:
    while True:
        try:
            snapshot = await asyncio.to_thread(source.read)
        except redis.RedisError as exc:
            log.warning("events of %s: redis error: %s", source.name, exc)
            yield error("the job store (Redis) is unavailable; reconnect to resume")
            return
        if snapshot is None:
            yield error(f"{source.name} is gone")
            return
        events, done = source.events(snapshot)
        for event in events:
            yield event
        if done:
            return
        await asyncio.sleep(poll)
