"""Canary and shadow splits on an alias: start, change, read, abort, promote, and the
statistics every API process adds to.

A split is one entry of the ``canaries`` hash (alias -> :class:`Split`), written in a
``WATCH`` transaction over the alias hash, the split hash and the candidate's entry and
announced before the call returns, like an alias change: every API process follows it
on its next request (shared/registry/index.py). Any change of the alias's target
ends its split (shared/registry/aliases.py): the statistics compared the old target.

Statistics are counters in one hash per alias (``canary:<alias>:stats``) that names
the split it counts (its ``split`` field). API processes add to it in batches with
one script that adds only while that field still names their split, so a batch that
arrives after the split ended, or after another split started, is refused instead of
counting for the wrong split; the counters outlive any API process.
"""

import hashlib
import math
import uuid
from collections.abc import Mapping
from typing import cast

import redis

from shared.redisdb.client import transact
from shared.redisdb.keys import Keys
from shared.registry.aliases import Aliases, Written
from shared.registry.store import AliasNotFound, ModelRegistry
from shared.schemas.canary import (
    CanaryRequest,
    ShadowStats,
    Split,
    SplitMode,
    SplitStats,
    SplitView,
    Variant,
    VariantStats,
)
from shared.schemas.common import utcnow
from shared.schemas.models import Alias, AliasSource, AliasSummary, ModelNews, NewsKind

SPLIT_FIELD = "split"
"""The stats hash's field naming the split its counters belong to."""
Z95 = 1.959963984540054

_ADD = """
-- KEYS: the alias's stats hash;  ARGV: split id, then field, increment pairs
if redis.call('hget', KEYS[1], 'split') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('hincrbyfloat', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


class NoSplit(LookupError):
    """The alias has no running split."""


class SameTarget(ValueError):
    """The candidate is the alias's own target: nothing to compare."""


Counts = dict[str, float]
"""Counter field -> increment (the field names below are the only ones)."""


def answered(variant: Variant, images: int) -> Counts:
    """One request a side answered."""
    return {f"requests:{variant}": 1, f"images:{variant}": images}


def compared(images: int, agreed: int, top_primary: float, top_canary: float) -> Counts:
    """Images the candidate predicted beside the primary (shadow), with the sums of each
    side's highest probability."""
    return {
        "shadow:compared": images,
        "shadow:agreed": agreed,
        "shadow:top:primary": top_primary,
        "shadow:top:canary": top_canary,
    }


def dropped(images: int) -> Counts:
    return {"shadow:dropped": images}


def corrected(variant: Variant, right: bool) -> Counts:
    """A correction of an answer a side gave (``right``: the user confirmed it)."""
    return {f"feedback:{variant}": 1, f"feedback:{variant}:right": int(right)}


def lands_on_canary(split_id: str, client: str, percent: int) -> bool:
    """The side of a split a client always lands on: a hash of the split and the client
    id in 0..9999, below ``percent`` x 100. Raising the percent moves clients only from
    the primary to the candidate; another split reshuffles them."""
    digest = hashlib.sha256(f"{split_id}\n{client}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < percent * 100


def wilson(successes: int, n: int) -> tuple[float, float] | None:
    """The Wilson score interval (95%) of a proportion: honest for small n and near 0 or 1,
    where the normal approximation is not."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def stats_from(raw: Mapping[str, str]) -> SplitStats:
    """The statistics a stats hash holds (missing counters are zero)."""

    def n(name: str) -> int:
        return round(float(raw.get(name, 0)))

    def ratio(top: float, count: int) -> float | None:
        return top / count if count else None

    shadow_n, agreed = n("shadow:compared"), n("shadow:agreed")

    def side(variant: Variant) -> VariantStats:
        corrections, right = n(f"feedback:{variant}"), n(f"feedback:{variant}:right")
        return VariantStats(
            requests=n(f"requests:{variant}"),
            images=n(f"images:{variant}"),
            mean_top_probability=ratio(float(raw.get(f"shadow:top:{variant}", 0)), shadow_n),
            corrections=corrections,
            correct=right,
            accuracy=ratio(right, corrections),
            accuracy_interval=wilson(right, corrections),
        )

    return SplitStats(
        primary=side(Variant.primary),
        canary=side(Variant.canary),
        shadow=ShadowStats(
            compared=shadow_n,
            agreed=agreed,
            agreement=ratio(agreed, shadow_n),
            agreement_interval=wilson(agreed, shadow_n),
            dropped=n("shadow:dropped"),
        ),
    )


class Splits:
    def __init__(self, aliases: Aliases) -> None:
        self.aliases = aliases
        self.models: ModelRegistry = aliases.models
        self.redis: redis.Redis = aliases.redis
        self.keys: Keys = aliases.keys
        self._add = self.redis.register_script(_ADD)

    def start(self, name: str, request: CanaryRequest) -> SplitView:
        """Start a split on ``name``, or change the running one. The same candidate keeps
        its split (id, start, statistics: a shadow turned canary keeps its agreement);
        another candidate starts a new one from zero. :class:`AliasNotFound`,
        ``ModelNotFound``, ``ModelBroken``, :class:`SameTarget`."""
        started: Split | None = None

        def change(pipe: redis.client.Pipeline) -> None:
            nonlocal started
            current = pipe.hget(self.keys.aliases(), name)
            if not current:
                raise AliasNotFound(name)
            target = AliasSummary.model_validate_json(current).model_id
            self.models.require_model(pipe, request.model_id)
            if request.model_id == target:
                raise SameTarget(f"model {target} is alias {name}'s own target")
            raw = pipe.hget(self.keys.canaries(), name)
            old = Split.model_validate_json(raw) if raw else None
            now = utcnow()
            if old is not None and old.model_id == request.model_id:
                started = old.model_copy(
                    update={
                        "mode": request.mode,
                        "percent": request.percent,
                        "updated_at": now,
                        "reason": request.reason or old.reason,
                    }
                )
            else:
                started = Split(
                    id=uuid.uuid4().hex,
                    alias=name,
                    model_id=request.model_id,
                    primary_model_id=target,
                    mode=request.mode,
                    percent=request.percent,
                    started_at=now,
                    updated_at=now,
                    reason=request.reason,
                )
            pipe.multi()
            pipe.hset(self.keys.canaries(), name, started.model_dump_json())
            if old is None or old.id != started.id:
                pipe.delete(self.keys.canary_stats(name))
                pipe.hset(self.keys.canary_stats(name), SPLIT_FIELD, started.id)
            self.models.announce(
                pipe, ModelNews(kind=NewsKind.canary, alias=name, model_id=request.model_id)
            )

        transact(
            self.redis,
            change,
            self.keys.aliases(),
            self.keys.canaries(),
            self.keys.model(request.model_id),
        )
        assert started is not None
        view = self.view(name)
        return view if view is not None else SplitView(**started.model_dump(), stats=stats_from({}))

    def get(self, name: str) -> Split | None:
        raw = self.redis.hget(self.keys.canaries(), name)
        return Split.model_validate_json(cast(str, raw)) if raw else None

    def view(self, name: str) -> SplitView | None:
        """The running split with its statistics, or ``None``."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(self.keys.canaries(), name)
            pipe.hgetall(self.keys.canary_stats(name))
            raw, stats = pipe.execute()
        return _view(raw, stats)

    def views(self) -> list[SplitView]:
        """Every running split with its statistics (for metrics)."""
        splits = cast(dict[str, str], self.redis.hgetall(self.keys.canaries()))
        names = sorted(splits)
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.keys.canary_stats(name))
            stats = pipe.execute() if names else []
        views = (_view(splits[name], raw) for name, raw in zip(names, stats, strict=True))
        return [view for view in views if view is not None]

    def candidates(self) -> set[uuid.UUID]:
        """The models running splits try out (retention spares them)."""
        raws = cast(dict[str, str], self.redis.hgetall(self.keys.canaries()))
        return {Split.model_validate_json(raw).model_id for raw in raws.values()}

    def abort(self, name: str) -> SplitView:
        """End the split; the alias keeps its target. A history row (source ``canary``,
        reason "aborted") records it; the answer has the final statistics."""
        ended: SplitView | None = None

        def change(pipe: redis.client.Pipeline) -> None:
            nonlocal ended
            raw = pipe.hget(self.keys.canaries(), name)
            current = pipe.hget(self.keys.aliases(), name)
            if not raw or not current:
                raise NoSplit(name)
            stats = cast(dict[str, str], pipe.hgetall(self.keys.canary_stats(name)))
            ended = _view(cast(str, raw), stats)
            assert ended is not None
            target = AliasSummary.model_validate_json(current).model_id
            pipe.multi()
            self.aliases.record(
                pipe, name, target, AliasSource.canary, "aborted", candidate=ended.model_id
            )
            self._end(pipe, name)

        keys = self.keys
        transact(self.redis, change, keys.aliases(), keys.canaries(), keys.canary_stats(name))
        assert ended is not None
        return ended

    def promote(self, name: str) -> Alias:
        """Make the candidate the alias's target and end the split, as one transaction
        (``ModelNotFound``, ``ModelBroken`` if it can no longer serve)."""

        def change(pipe: redis.client.Pipeline) -> Written:
            raw = pipe.hget(self.keys.canaries(), name)
            current = cast(str | None, pipe.hget(self.keys.aliases(), name))
            if not raw or not current:
                raise NoSplit(name)
            split = Split.model_validate_json(raw)
            pipe.watch(self.keys.model(split.model_id))
            self.models.require_model(pipe, split.model_id)
            target = AliasSummary.model_validate_json(current).model_id
            how = f"at {split.percent}%" if split.mode is SplitMode.canary else "(shadow)"
            pipe.multi()
            return self.aliases.write_alias(
                pipe,
                name,
                split.model_id,
                target,
                AliasSource.canary,
                f"promoted from {split.mode} {how}",
                candidate=split.model_id,
                before=current,
            )  # which ends the split

        written = transact(self.redis, change, self.keys.aliases(), self.keys.canaries())
        self.aliases.settle(written, undo=False)  # REDIS_MIN_REPLICAS; the split is over
        alias = self.aliases.get_alias(name)
        assert alias is not None
        return alias

    def add(self, batches: Mapping[tuple[str, str], Counts]) -> None:
        """Add one process's counts, per (alias, split id), in one round trip; counts for
        a split that is no longer the alias's are dropped by the script."""
        if not batches:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for (alias, split_id), counts in batches.items():
                args: list[str | float] = [split_id]
                for field, increment in counts.items():
                    args += [field, repr(float(increment))]
                self._add(keys=[self.keys.canary_stats(alias)], args=args, client=pipe)
            pipe.execute()

    def _end(self, pipe: redis.client.Pipeline, name: str) -> None:
        self.aliases.end_split(pipe, name)
        self.models.announce(pipe, ModelNews(kind=NewsKind.canary, alias=name))


def _view(raw: str | None, stats: Mapping[str, str]) -> SplitView | None:
    if not raw:
        return None
    split = Split.model_validate_json(raw)
    counted = stats if stats.get(SPLIT_FIELD) == split.id else {}
    return SplitView(**split.model_dump(), stats=stats_from(counted))
