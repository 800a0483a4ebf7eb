"""What every Redis-backed store shares: its client, key names and replication rule, its
Lua scripts and keys that hold a token, and the decoding of what it reads back, which
skips (and logs) a record that does not validate, written by another release or
damaged, rather than let it take a list down with it."""

import logging
from collections.abc import Iterable
from enum import Enum
from functools import cached_property
from typing import Protocol, TypeVar
from uuid import UUID

import redis
from pydantic import BaseModel, ValidationError
from redis.commands.core import Script

from shared.redisdb.client import Replication
from shared.redisdb.keys import Keys
from shared.redisdb.lock import TokenKeys

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def decode_record(model: type[M], raw: str | bytes | None, what: str) -> M | None:
    """``raw`` as a ``model``; ``None`` if absent, or (logged) if it does not validate."""
    if not raw:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        log.warning("skipping %s that does not validate: %s", what, exc.errors()[0]["msg"])
        return None


def decode_records(model: type[M], rows: Iterable[str | bytes], what: str) -> list[M]:
    """The ``rows`` that validate as a ``model``, in order; the others are logged."""
    return [item for item in (decode_record(model, row, what) for row in rows) if item is not None]


class Record(Protocol):
    """What a store keeps with a life cycle: a job, a sweep."""

    @property
    def id(self) -> UUID: ...

    @property
    def status(self) -> Enum: ...


class Ended(Exception):
    """The record already ended (succeeded, failed or was cancelled): it cannot change."""

    def __init__(self, kind: str, record: Record) -> None:
        super().__init__(f"{kind} {record.id} already {record.status.value}")
        self.record = record


class Lua:
    """A store's Lua script, as a class attribute: registered with the instance's own
    client on first use (redis-py then sends it by SHA, and again in full after a
    restart), and kept on the instance from then on."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, store: "RedisStore", owner: type) -> Script:
        script = store.redis.register_script(self.source)
        store.__dict__[self.name] = script  # shadows this (non-data) descriptor
        return script


class RedisStore:
    """A store in the service's Redis. ``replication`` is the rule its acknowledged
    writes are confirmed by (:func:`shared.redisdb.client.confirm`); by default none."""

    def __init__(
        self, client: redis.Redis, keys: Keys, replication: Replication | None = None
    ) -> None:
        self.redis = client
        self.keys = keys
        self.replication = replication or Replication()

    @cached_property
    def _tokens(self) -> TokenKeys:
        """The store's keys that hold a token (its leases and locks)."""
        return TokenKeys(self.redis)
