"""The corrections' index in Redis: an entry per correction, a sorted set of all ids and
one per label, and a count per (predicted, label) pair. Adding is one Lua script that
checks ``FEEDBACK_MAX`` and the duplicate and writes all of these together; removing
is one script as well. With ``REDIS_MIN_REPLICAS``, an entry the API acknowledges is
confirmed on the replicas first (:meth:`FeedbackIndex.confirm`)."""

from contextlib import AbstractContextManager
from typing import cast
from uuid import UUID

from shared.redisdb.client import confirm
from shared.redisdb.store import Lua, RedisStore
from shared.schemas.common import utcnow
from shared.schemas.feedback import NO_PREDICTION, FeedbackItem, FeedbackStats, PairCount

_ADD = """
-- KEYS: item, all, by label, pairs
-- ARGV: item json, score, id, max (0: no limit), pair field
if redis.call('exists', KEYS[1]) == 1 then return 'exists' end
local limit = tonumber(ARGV[4])
if limit > 0 and redis.call('zcard', KEYS[2]) >= limit then return 'full' end
redis.call('set', KEYS[1], ARGV[1])
redis.call('zadd', KEYS[2], ARGV[2], ARGV[3])
redis.call('zadd', KEYS[3], ARGV[2], ARGV[3])
redis.call('hincrby', KEYS[4], ARGV[5], 1)
return 'created'
"""


_REMOVE = """
-- KEYS: item, all, by label, pairs;  ARGV: id, pair field
if redis.call('del', KEYS[1]) == 0 then return 0 end
redis.call('zrem', KEYS[2], ARGV[1])
redis.call('zrem', KEYS[3], ARGV[1])
if redis.call('hincrby', KEYS[4], ARGV[2], -1) <= 0 then redis.call('hdel', KEYS[4], ARGV[2]) end
return 1
"""


def _pair(item: FeedbackItem) -> str:
    predicted = NO_PREDICTION if item.predicted is None else str(item.predicted)
    return f"{predicted}:{item.label}"


ADD_LOCK_SECONDS = 10.0
"""Longest one add may hold its correction's lock (a dead holder's expires)."""


class FeedbackIndex(RedisStore):
    """The Redis side: entries, ids by time and by label, pair counts."""

    _add = Lua(_ADD)
    _remove = Lua(_REMOVE)

    def adding(self, feedback_id: UUID) -> AbstractContextManager[str]:
        """Hold the correction's lock while its file and entry are written."""
        return self._tokens.held(
            self.keys.feedback_adding(feedback_id), ADD_LOCK_SECONDS, wait=ADD_LOCK_SECONDS
        )

    def _keys_of(self, item: FeedbackItem) -> list[str]:
        return [
            self.keys.feedback_item(item.id),
            self.keys.feedback_all(),
            self.keys.feedback_label(item.label),
            self.keys.feedback_pairs(),
        ]

    def add(self, item: FeedbackItem, limit: int = 0) -> str:
        """``created``, ``exists`` or ``full`` (only with a ``limit``), decided atomically."""
        args: list[str | float | int] = [
            item.model_dump_json(),
            item.created_at.timestamp(),
            str(item.id),
            limit,
            _pair(item),
        ]
        return cast(str, self._add(keys=self._keys_of(item), args=args))

    def confirm(self, feedback_id: UUID) -> None:
        """Return once ``REDIS_MIN_REPLICAS`` replicas have the entry; else
        ``NotReplicated`` (the entry stays: sending the correction again finds it)."""
        proof = (("EXISTS", self.keys.feedback_item(feedback_id)), 1)
        confirm(self.redis, self.replication, self.keys.replicated(), proof)

    def remove(self, item: FeedbackItem) -> bool:
        return bool(self._remove(keys=self._keys_of(item), args=[str(item.id), _pair(item)]))

    def get(self, feedback_id: UUID) -> FeedbackItem | None:
        raw = self.redis.get(self.keys.feedback_item(feedback_id))
        return FeedbackItem.model_validate_json(raw) if raw else None

    def list(self, label: int | None, offset: int, limit: int) -> tuple[list[FeedbackItem], int]:
        """Newest first, optionally one label's."""
        key = self.keys.feedback_all() if label is None else self.keys.feedback_label(label)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrevrange(key, offset, offset + limit - 1)
            pipe.zcard(key)
            ids, total = pipe.execute()
        raws = self.redis.mget([self.keys.feedback_item(i) for i in ids]) if ids else []
        return [FeedbackItem.model_validate_json(raw) for raw in raws if raw], int(total)

    def count(self) -> int:
        return int(self.redis.zcard(self.keys.feedback_all()))

    def ids(self) -> set[UUID]:
        return {
            UUID(i) for i in cast(list[str], self.redis.zrange(self.keys.feedback_all(), 0, -1))
        }

    def stats(self) -> FeedbackStats:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.zcard(self.keys.feedback_all())
            for label in range(10):
                pipe.zcard(self.keys.feedback_label(label))
            pipe.hgetall(self.keys.feedback_pairs())
            total, *counts, pairs = pipe.execute()
        rows = []
        for pair, count in cast(dict[str, str], pairs).items():
            predicted, _, true_label = pair.partition(":")
            rows.append(
                PairCount(
                    predicted=None if predicted == NO_PREDICTION else int(predicted),
                    label=int(true_label),
                    count=int(count),
                )
            )
        rows.sort(
            key=lambda row: (-row.count, row.label, -1 if row.predicted is None else row.predicted)
        )
        return FeedbackStats(
            total=int(total),
            by_label={str(label): int(n) for label, n in enumerate(counts)},
            by_prediction=rows,
        )

    def is_indexed(self) -> bool:
        return bool(self.redis.exists(self.keys.feedback_indexed()))

    def mark_indexed(self) -> None:
        self.redis.set(self.keys.feedback_indexed(), utcnow().isoformat())
