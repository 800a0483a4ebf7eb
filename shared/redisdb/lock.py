"""Tokens held under a key with a TTL: the one compare-and-renew and compare-and-delete.

A holder proves itself by the random token it wrote; renewing or releasing a key that
another process holds by now (after this one's TTL lapsed) does nothing. Job leases
(shared/jobs/leases.py) and a sweep's asking lock (shared/sweeps/study.py) are such keys.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

import redis

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def ms(seconds: float) -> int:
    return int(seconds * 1000)


class TokenKeys:
    """Take, renew and release keys that hold a token."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def take(self, key: str, token: str, seconds: float) -> bool:
        return bool(self.redis.set(key, token, nx=True, px=ms(seconds)))

    def renew(self, key: str, token: str, seconds: float) -> bool:
        """Extend the key's TTL if ``token`` still holds it."""
        return bool(self._renew(keys=[key], args=[token, ms(seconds)]))

    def release(self, key: str, token: str) -> bool:
        return bool(self._release(keys=[key], args=[token]))

    @contextmanager
    def held(self, key: str, seconds: float, wait: float, poll: float = 0.05) -> Iterator[str]:
        """Hold ``key`` (waiting up to ``wait`` seconds for it) for the ``with`` block;
        a holder that dies lets it go after ``seconds``. :class:`TimeoutError` if
        another process keeps it."""
        token = uuid4().hex
        deadline = time.monotonic() + wait
        while not self.take(key, token, seconds):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{key} is held by another process")
            time.sleep(poll)
        try:
            yield token
        finally:
            self.release(key, token)
