"""Redis clients, configured once: where Redis is, timeouts, retries that ride out a blip
or a failover, transactions, and the one rule that confirms a write on the replicas.

**Where.** Either one address (``REDIS_URL``: a single server, or a managed Redis that
fails over behind one name), or the primary that Redis Sentinel names
(``REDIS_SENTINELS``, ``REDIS_SENTINEL_MASTER``, ``REDIS_SENTINEL_PASSWORD``):
:class:`RedisTarget`. Every client of the service is made here, so that all of them
follow a failover: the sync and asyncio clients (:func:`connect`,
:func:`connect_async`), the Celery broker and result backend (:func:`celery_broker`)
and Optuna's journal (a client of :func:`connect` with ``decode=False``).

**Retries.** A Redis restart of a few seconds, or a failover, is not a failure. Every
command retries on a connection error, a timeout or ``READONLY`` (a primary demoted
under a pooled connection) with exponential backoff (redis-py's ``Retry``); how long
depends on who waits: an API request gives up after a few seconds (then 503 with
``Retry-After``), a training job waits up to about half a minute, pausing rather than
dying.

**Kept twice.** With ``REDIS_MIN_REPLICAS`` >= 1, the writes the service acknowledges
are confirmed by :func:`confirm` (``WAIT``) before they are; see there.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from socket import timeout as SocketTimeout
from typing import Any, TypeVar, cast
from urllib.parse import quote

import redis
import redis.asyncio
import redis.asyncio.client
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import parse_url
from redis.exceptions import ReadOnlyError
from redis.retry import Retry

from shared.config import SentinelAddress, Settings

OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "health_check_interval": 30,
}

SENTINEL_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 1, "socket_timeout": 1}
"""For the sentinels themselves: a sentinel that does not answer at once is skipped for
the next one (no retries of its own), so one dead sentinel costs a second, not a minute."""

API_RETRIES = 3
"""About 1.5 s of backoff: a request should fail fast and say so."""
WORKER_RETRIES = 20
"""About 33 s of backoff (0.1 s doubling to 2 s): a training job outlasts a restart."""

RETRIED_ASYNC: tuple[type[redis.RedisError], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ReadOnlyError,
)
RETRIED: tuple[type[Exception], ...] = (*RETRIED_ASYNC, SocketTimeout)
"""What a command retries on. ``READONLY``: behind one address (a managed Redis), a
pooled connection still on a demoted primary gets it; the retry drops that connection,
and the next one reaches the new primary. (Through Sentinel, redis-py turns
``READONLY`` into a connection error and asks the sentinels again.)"""


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=2.0, base=0.1)


@dataclass(frozen=True)
class RedisTarget:
    """Where the service's Redis is. Without sentinels: ``url`` itself. With them: the
    primary they name as ``master``, reached with ``url``'s password, user and
    database (its host and port are not used); ``sentinel_password`` is the sentinels'
    own, never sent to a data server."""

    url: str
    sentinels: tuple[SentinelAddress, ...] = ()
    master: str = "mymaster"
    sentinel_password: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> "RedisTarget":
        secret = settings.redis_sentinel_password
        return cls(
            url=settings.redis_url,
            sentinels=settings.redis_sentinels,
            master=settings.redis_sentinel_master,
            sentinel_password=secret.get_secret_value() if secret is not None else None,
        )

    def data_options(self) -> dict[str, Any]:
        """What ``url`` says beside its host and port: database, user, password."""
        params = parse_url(self.url)
        return {k: params[k] for k in ("db", "username", "password") if params.get(k) is not None}

    def sentinel_options(self) -> dict[str, Any]:
        """How to talk to the sentinels: their password (only theirs) and short timeouts."""
        return {**SENTINEL_OPTIONS, "password": self.sentinel_password}


def _target(where: "RedisTarget | str") -> RedisTarget:
    return where if isinstance(where, RedisTarget) else RedisTarget(where)


# --- redis-py's Sentinel connections, asking the sentinels on every reconnect ----------
#
# Work-around for redis/redis-py#3874 (redis-py 8.1; a fix is proposed in PR #3875): a
# Sentinel-managed connection asks the sentinels for the primary only in connect().
# After a *timeout* (a partitioned primary: nothing refuses, nothing answers), the
# command's retries reconnect through connect_check_health() -> _connect() to the
# address the connection last had, the old primary, until the retries run out; only
# the next command asks again. (After kill -9 the old address refuses at once and the
# pool reconnects through connect(), so the client follows at once.) Here every socket
# a master connection opens goes to the address the sentinels name at that moment.
# Celery's connections are kombu's, made with redis-py's own class: after a partition
# its first publish or poll may fail on the old address; the next one asks the sentinels.


class _FollowingConnection(redis.sentinel.SentinelManagedConnection):
    def _connect(self) -> Any:
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()


class _FollowingAsyncConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    async def _connect(self) -> Any:
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        return await super()._connect()


def connect(
    where: RedisTarget | str, retries: int = API_RETRIES, *, decode: bool = True
) -> redis.Redis:
    """A sync client (the api's thread pool, the worker); ``decode=False`` gives bytes
    (Optuna's journal stores pickled snapshots)."""
    target = _target(where)
    retry = Retry(_backoff(), retries, supported_errors=RETRIED)
    options = {**OPTIONS, "decode_responses": decode}
    if not target.sentinels:
        return redis.Redis.from_url(target.url, retry=retry, **options)
    sentinel = redis.sentinel.Sentinel(
        target.sentinels,
        sentinel_kwargs={**target.sentinel_options(), "retry": Retry(NoBackoff(), 0)},
    )
    return sentinel.master_for(
        target.master,
        connection_class=_FollowingConnection,
        retry=retry,
        **target.data_options(),
        **options,
    )


def connect_async(where: RedisTarget | str, retries: int = API_RETRIES) -> redis.asyncio.Redis:
    """An asyncio client, bound to the event loop that first uses it."""
    target = _target(where)
    retry = redis.asyncio.retry.Retry(_backoff(), retries, supported_errors=RETRIED_ASYNC)
    if not target.sentinels:
        return redis.asyncio.Redis.from_url(target.url, retry=retry, **OPTIONS)
    sentinel = redis.asyncio.sentinel.Sentinel(
        target.sentinels,
        sentinel_kwargs={
            **target.sentinel_options(),
            "retry": redis.asyncio.retry.Retry(NoBackoff(), 0),
        },
    )
    return sentinel.master_for(
        target.master,
        connection_class=_FollowingAsyncConnection,
        retry=retry,
        **target.data_options(),
        **OPTIONS,
    )


async def subscribed_to_primary(pubsub: redis.asyncio.client.PubSub) -> bool:
    """Whether a subscription is on the server the sentinels name as primary now (always
    true behind one address). A subscription does not follow a failover by itself: on a
    primary cut off from the rest it hears nothing more, and says nothing either."""
    pool, connection = pubsub.connection_pool, pubsub.connection
    if connection is None or not isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool):
        return True
    host, port = await pool.get_master_address()
    return (connection.host, connection.port) == (host, port)


def server_id(client: redis.Redis) -> str:
    """The ``run_id`` of the server the client reaches: it changes when Redis restarts or
    a replica is promoted, the two moments when acknowledged-but-unconfirmed writes can
    be gone (worker/recovery.py then reconciles the registry with the artifact store)."""
    return str(client.info("server")["run_id"])


def celery_broker(where: RedisTarget | str) -> tuple[str, dict[str, Any]]:
    """The Celery broker (and result backend) URL and the transport options it needs.

    Behind one address: ``REDIS_URL`` as it is, no options. With sentinels, kombu's
    form and its pitfalls: one ``sentinel://`` entry per sentinel joined by ``;`` (no
    trailing ``;``: kombu reads an empty entry as localhost), each with the *data*
    password and database (kombu takes them from the first); the master's name in the
    options (Celery needs them in ``broker_transport_options`` and
    ``result_backend_transport_options`` both), and the *sentinels'* password in
    ``sentinel_kwargs``, never in the URL (there it would be taken for the data one).
    """
    target = _target(where)
    if not target.sentinels:
        return target.url, {}
    data = target.data_options()
    user = quote(data.get("username", ""), safe="")
    password = data.get("password")
    auth = f"{user}:{quote(password, safe='')}@" if password is not None else ""
    auth = auth or (f"{user}@" if user else "")
    db = data.get("db", 0)
    url = ";".join(
        f"sentinel://{auth}{f'[{host}]' if ':' in host else host}:{port}/{db}"
        for host, port in target.sentinels
    )
    options = {"master_name": target.master, "sentinel_kwargs": target.sentinel_options()}
    return url, options


T = TypeVar("T")


def call_with_retry(client: redis.Redis, do: Callable[[], T]) -> T:
    """Run a multi-command step (a WATCH transaction) again from the start on a
    connection error, with the client's own backoff: redis-py retries single
    commands, but not a transaction whose WATCH the lost connection dropped."""
    retry = client.get_retry()
    return do() if retry is None else retry.call_with_retry(do, lambda _error: None)


def transact(client: redis.Redis, do: Callable[[redis.client.Pipeline], T], *watch: str) -> T:
    """Run ``do`` as a ``WATCH`` transaction over ``watch`` (redis-py re-runs it when a
    watched key changed before ``EXEC``), again from the start on a lost connection;
    returns what ``do`` returned."""

    def run() -> T:
        # redis-py types the callable as -> None; value_from_callable returns its value
        result = client.transaction(do, *watch, value_from_callable=True)  # type: ignore[arg-type]
        return cast(T, result)

    return call_with_retry(client, run)


# --- kept twice ---------------------------------------------------------------------


class NotReplicated(redis.RedisError):
    """A write the service would acknowledge was not confirmed by ``REDIS_MIN_REPLICAS``
    replicas within ``REDIS_WAIT_MS`` (the API answers 503 with ``Retry-After``)."""


@dataclass(frozen=True)
class Replication:
    """``REDIS_MIN_REPLICAS`` and ``REDIS_WAIT_MS``; ``retries``: further WAITs, with the
    backoff between, before giving up (a worker waits out a replica's restart; a
    request answers at once)."""

    min_replicas: int = 0
    wait_ms: int = 500
    retries: int = 0

    @classmethod
    def of(cls, settings: Settings, retries: int = 0) -> "Replication":
        return cls(settings.redis_min_replicas, settings.redis_wait_ms, retries)


Proof = tuple[tuple[str, ...], object]
"""A read and the answer it gives when the write is on the server that confirms it:
``(("HGET", aliases, name), summary_json)``, ``(("EXISTS", key), 1)``."""


def confirm(client: redis.Redis, rule: Replication, marker: str, proof: Proof) -> None:
    """The one WAIT rule: return once ``rule.min_replicas`` replicas have the write
    ``proof`` shows, else :class:`NotReplicated`. Nothing to do when it is 0.

    ``WAIT`` counts the replicas that have everything *its own connection* wrote, and a
    pooled client cannot promise the connection that made the write. So one pipeline,
    on one connection, writes ``marker`` (``INCR``: after the write in the replication
    stream, since the write had returned), then ``WAIT``s, then reads ``proof``. If a
    failover came between the write and this, the pipeline runs on the new primary:
    there ``WAIT`` covers what that server has, and ``proof`` says whether the write is
    part of it (a write lost with the old primary is not confirmed).
    """
    if rule.min_replicas <= 0:
        return
    command, expected = proof
    acked = 0
    for attempt in range(rule.retries + 1):
        if attempt:
            time.sleep(_backoff().compute(attempt))
        with client.pipeline(transaction=False) as pipe:
            pipe.incr(marker)
            pipe.execute_command("WAIT", rule.min_replicas, rule.wait_ms)
            pipe.execute_command(*command)
            _, acked, seen = pipe.execute()
        if seen != expected:
            raise NotReplicated("the write is not on the primary any more (lost in a failover)")
        if int(acked) >= rule.min_replicas:
            return
    raise NotReplicated(
        f"{acked} of {rule.min_replicas} replica(s) confirmed the write within {rule.wait_ms} ms"
    )


# --- eviction -------------------------------------------------------------------------


class EvictingRedis(RuntimeError):
    """Redis is set up to drop keys under memory pressure: the service refuses it."""


SAFE_POLICY = "noeviction"


def eviction_problem(policy: str) -> str | None:
    """Why a ``maxmemory-policy`` would lose the service's data, or ``None`` if it is safe.

    ``allkeys-*`` evicts any key: job records, the registry, the queue. ``volatile-*``
    evicts keys that have a TTL, and the service's leases, locks and Idempotency-Keys
    have one: a lease evicted early makes a running job look orphaned, a lock or a key
    evicted early lets two writers in. Only ``noeviction`` is safe: a write past
    ``maxmemory`` then fails, and says so (the API answers 507)."""
    if policy == SAFE_POLICY:
        return None
    return (
        f"Redis's maxmemory-policy is {policy}, which lets Redis delete the service's keys "
        f"(job records, the registry, leases) under memory pressure: set it to {SAFE_POLICY}"
    )


def check_eviction(client: redis.Redis) -> None:
    """:class:`EvictingRedis` with one line saying why, if Redis may evict (INFO works
    where CONFIG is disabled, as on managed services)."""
    problem = eviction_problem(str(client.info("memory").get("maxmemory_policy", SAFE_POLICY)))
    if problem is not None:
        raise EvictingRedis(problem)


async def check_eviction_async(client: redis.asyncio.Redis) -> None:
    info = await client.info("memory")
    problem = eviction_problem(str(info.get("maxmemory_policy", SAFE_POLICY)))
    if problem is not None:
        raise EvictingRedis(problem)
