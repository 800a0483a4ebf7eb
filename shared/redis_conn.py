"""Redis clients, configured once: timeouts, and retries that ride out a blip.

A Redis restart of a few seconds is not a failure. Every command retries on a
connection error or timeout with exponential backoff (redis-py's ``Retry``); how
long depends on who waits: an API request gives up after a few seconds (then 503
with ``Retry-After``), a training job waits up to about half a minute, pausing
rather than dying.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "health_check_interval": 30,
}

API_RETRIES = 3
"""About 1.5 s of backoff: a request should fail fast and say so."""
WORKER_RETRIES = 20
"""About 33 s of backoff (0.1 s doubling to 2 s): a training job outlasts a restart."""


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=2.0, base=0.1)


def connect(url: str, retries: int = API_RETRIES) -> redis.Redis:
    """A sync client (the api's thread pool, the worker)."""
    retry = Retry(_backoff(), retries)
    return redis.Redis.from_url(url, retry=retry, **OPTIONS)


def connect_async(url: str, retries: int = API_RETRIES) -> redis.asyncio.Redis:
    """An asyncio client, bound to the event loop that first uses it."""
    retry = redis.asyncio.retry.Retry(_backoff(), retries)
    return redis.asyncio.Redis.from_url(url, retry=retry, **OPTIONS)


T = TypeVar("T")


def call_with_retry(client: redis.Redis, do: Callable[[], T]) -> T:
    """Run a multi-command step (a WATCH transaction) again from the start on a
    connection error, with the client's own backoff: redis-py retries single
    commands, but not a transaction whose WATCH the lost connection dropped."""
    retry = client.get_retry()
    return do() if retry is None else retry.call_with_retry(do, lambda _error: None)
