"""What serves, as the API reads it: the one place that decides the default model.

``POST /predict`` must not pay a Redis round trip per request, yet every API process
must follow a promotion, a rollback or a deletion on its very next request. So the
index keeps a snapshot (registered ids, alias targets, the aliases' canary and shadow
splits, the default) and
:meth:`ModelIndex.follow` (a task of the API's lifespan) subscribes to the registry's
``announcements`` channel, re-reading the snapshot on each announcement and every
``REFRESH_SECONDS`` (a bound should the subscription die unnoticed). Writers publish
*before* they answer, and the snapshot is only trusted while subscribed and re-read
since the last news; otherwise (start-up, Redis restarting) every request reads Redis.

A subscription does not follow a failover by itself: behind Sentinel the follower
checks at every re-read that it listens to the primary the sentinels name, and
subscribes again (then re-reads the snapshot: what it may have missed) when not. While
Redis does not answer at all (a failover's seconds, a restart), a request is served
from the last snapshot read rather than refused: a cached model keeps predicting.

The default: the model the ``SERVING_ALIAS`` alias points at, when it exists and is
intact; otherwise the newest intact model (the bootstrap default), flagged as a
fallback when the alias or the newest model had to be passed over.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

import redis
import redis.asyncio

from shared.redisdb.client import OPTIONS, RedisTarget, connect_async, subscribed_to_primary
from shared.redisdb.keys import Keys
from shared.registry.store import decode_info
from shared.schemas.canary import Split
from shared.schemas.models import AliasSummary, ModelInfo, ModelNews, Serving

log = logging.getLogger(__name__)

SCAN_CHUNK = 20
"""Newest models read at a time while looking for an intact one."""


class UnknownAlias(LookupError):
    pass


@dataclass(frozen=True)
class Snapshot:
    ids: frozenset[UUID] = frozenset()
    aliases: dict[str, UUID] = field(default_factory=dict)
    splits: dict[str, Split] = field(default_factory=dict)
    default: Serving = field(
        default_factory=lambda: Serving(model_id=None, alias=None, fallback=False)
    )


class ModelIndex:
    REFRESH_SECONDS = 1.0

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, serving_alias: str) -> None:
        self.redis = client
        self.keys = keys
        self.serving_alias = serving_alias
        self._snapshot = Snapshot()
        self._current = False  # the snapshot holds: subscribed, and re-read since the news
        self._last: Snapshot | None = None  # the newest read, whoever made it
        self._away_until = 0.0  # Redis did not answer: serve _last without asking till then
        self._subscribed = False
        self._following: asyncio.Task[None] | None = None
        self._closing = False
        self.listeners: list[Callable[[ModelNews], None]] = []
        """Called with every announcement heard (the API's model cache forgets what
        was deleted or found broken)."""

    @classmethod
    def from_url(cls, url: RedisTarget | str, keys: Keys, serving_alias: str) -> "ModelIndex":
        """``url``: ``REDIS_URL``, or the whole :class:`RedisTarget` (Sentinel)."""
        return cls(connect_async(url), keys, serving_alias)

    async def snapshot(self) -> Snapshot:
        """The followed snapshot while it holds, else a fresh read; while Redis does not
        answer, the last one read (once there is one), retried at most every
        ``REFRESH_SECONDS`` so that a request does not wait out the retries each time."""
        if self._current:
            return self._snapshot
        if self._last is not None and time.monotonic() < self._away_until:
            return self._last
        try:
            return await self._read()
        except (redis.RedisError, OSError) as exc:
            if self._last is None:
                raise
            log.warning("serving from the last registry snapshot: redis unreachable: %s", exc)
            self._away_until = time.monotonic() + self.REFRESH_SECONDS
            return self._last

    async def resolve(
        self, model_id: UUID | None, alias: str | None
    ) -> tuple[UUID | None, str | None]:
        """The model a request names (by id or alias) or the default, with the alias it
        is served through. ``None`` id: not registered (or no model at all)."""
        snap = await self.snapshot()
        if model_id is not None:
            return (model_id if model_id in snap.ids else None), None
        if alias is not None:
            target = snap.aliases.get(alias)
            if target is None:
                raise UnknownAlias(alias)
            return (target if target in snap.ids else None), alias
        return snap.default.model_id, snap.default.alias

    async def split(self, alias: str) -> Split | None:
        """The canary or shadow split running on ``alias``, if any."""
        return (await self.snapshot()).splits.get(alias)

    async def splits(self) -> list[Split]:
        return list((await self.snapshot()).splits.values())

    async def ping(self) -> None:
        await self.redis.ping()

    async def serving(self) -> Serving:
        return (await self.snapshot()).default

    async def get_model(self, model_id: UUID) -> ModelInfo | None:
        raw = await self.redis.get(self.keys.model(model_id))
        info = decode_info(raw)
        return None if info is None or info.deleting else info

    def follow(self) -> None:
        """Start following the announcements (in the running event loop)."""
        self._following = asyncio.create_task(self._follow(), name="follow announcements")

    async def aclose(self) -> None:
        # Not one cancel(): redis-py's reads with a timeout can take a cancellation for
        # their own timeout (asyncio.timeout in Python 3.11) and carry on.
        self._closing = True
        while self._following is not None and not self._following.done():
            self._following.cancel()
            await asyncio.wait({self._following}, timeout=0.05)
        await self.redis.aclose()

    async def _follow(self) -> None:
        said = False  # once per outage, not every second of it
        while not self._closing:
            try:
                await self._follow_subscribed()
            except (redis.RedisError, OSError) as exc:
                said = said and not self._subscribed
                if not said:
                    log.info("not following model announcements for now: %s", exc)
                    said = True
            finally:
                self._current = self._subscribed = False
            await asyncio.sleep(self.REFRESH_SECONDS)

    async def _follow_subscribed(self) -> None:
        async with self.redis.pubsub() as pubsub:
            await pubsub.subscribe(self.keys.announcements())
            confirmed = await pubsub.get_message(timeout=OPTIONS["socket_timeout"])
            if not confirmed or confirmed["type"] != "subscribe":
                raise redis.RedisError("no confirmation of the subscription")
            self._subscribed = True
            while not self._closing:  # subscribed first, then read: no news falls between
                self._snapshot = await self._read()
                if not await subscribed_to_primary(pubsub):
                    raise redis.ConnectionError("the primary changed: subscribing to the new one")
                self._current = True
                message = await pubsub.get_message(timeout=self.REFRESH_SECONDS)
                self._current = False  # news, or time's up: read again before trusting it
                if message is not None and message["type"] == "message":
                    self._tell(message["data"])

    def _tell(self, data: str) -> None:
        try:
            news = ModelNews.model_validate_json(data)
        except ValueError:
            log.warning("ignoring an announcement that does not validate")
            return
        for listener in self.listeners:
            listener(news)

    async def _read(self) -> Snapshot:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrevrange(self.keys.models(), 0, -1)
            pipe.hgetall(self.keys.aliases())
            pipe.hgetall(self.keys.canaries())
            newest, raw_aliases, raw_splits = await pipe.execute()
        ids = [UUID(i) for i in newest]
        aliases = {
            name: AliasSummary.model_validate_json(raw).model_id
            for name, raw in raw_aliases.items()
        }
        splits = {name: Split.model_validate_json(raw) for name, raw in raw_splits.items()}
        snapshot = Snapshot(frozenset(ids), aliases, splits, await self._default(ids, aliases))
        self._last, self._away_until = snapshot, 0.0
        return snapshot

    async def _default(self, newest: list[UUID], aliases: dict[str, UUID]) -> Serving:
        target = aliases.get(self.serving_alias)
        if target is not None and target in newest:
            info = await self.get_model(target)
            if info is not None and info.broken is None:
                return Serving(model_id=target, alias=self.serving_alias, fallback=False)
        passed_over = target is not None
        for start in range(0, len(newest), SCAN_CHUNK):
            chunk = newest[start : start + SCAN_CHUNK]
            raws = await self.redis.mget([self.keys.model(i) for i in chunk])
            for model_id, raw in zip(chunk, raws, strict=True):
                info = decode_info(raw)
                if info is not None and info.broken is None and not info.deleting:
                    return Serving(model_id=model_id, alias=None, fallback=passed_over)
                passed_over = True
        return Serving(model_id=None, alias=None, fallback=passed_over)
