"""A Redis Sentinel topology for failover tests: one primary, one replica, three
sentinels, all the same ``redis-server`` binary (``redis-server sentinel.conf --sentinel``).

By default every server runs on a free loopback port; give ``data_places`` and
``sentinel_places`` (``Place``s of ``tests/netns.py``: hosts, or the loopback) to bind
each one to a place's address and start it there. Every server has its own folder and
config file, which Sentinel rewrites as it reconfigures them.

Sentinel is tuned to fail over in seconds: a server is down after 2 s without an answer
(``down-after-milliseconds``), quorum 2 of 3, a short ``failover-timeout``, diskless
replication without delay, ``min-replicas-to-write 0``. Optional passwords: ``password``
is the data servers' ``requirepass`` and ``masterauth`` (and the sentinels' ``auth-pass``);
``sentinel_password`` is the sentinels' own ``requirepass``, a separate secret, as in
production. Every wait is bounded and its timeout says what it last saw.
"""

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.netns import Loopback, Place

MASTER = "mymaster"
QUORUM = 2
T = TypeVar("T")


class NotYet(Exception):
    """A condition polled for does not hold yet; the message says what was seen."""


def poll(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Call ``check`` until it returns instead of raising ``NotYet``; bounded in time, and
    the timeout names what was awaited and what the last look found."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except NotYet as seen:
            last = str(seen)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last}")
        time.sleep(interval)


@dataclass
class Server:
    """One redis-server process, a data server or a sentinel, in its own folder."""

    name: str
    place: Place
    port: int
    dir: Path
    sentinel: bool
    password: str | None  # what a client of this server authenticates with
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return self.place.address

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def conf(self) -> Path:
        return self.dir / ("sentinel.conf" if self.sentinel else "redis.conf")

    @property
    def log(self) -> Path:
        return self.dir / "server.log"

    def start(self) -> None:
        """Start from its config file (as Sentinel last rewrote it); once it answers."""
        assert not self.running, f"{self.name} is running"
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        argv = [binary, str(self.conf), *(["--sentinel"] if self.sentinel else [])]
        self.proc = self.place.popen(argv, log=self.log, cwd=self.dir)
        poll(self._started, 15, f"{self.name} answering on {self.address}")

    def _started(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {tail}")
        if not self.answers():
            raise NotYet(f"{self.name} does not answer PING")

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 15) -> None:
        """Signal its process group and wait for it to end (SIGKILL: a crash; SIGTERM: a
        clean shutdown)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with suppress(ProcessLookupError):  # the group: a fork for a sync dies with it
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} still running {timeout}s after {sig}") from None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, **options: Any) -> redis.Redis:
        """A client of this server alone: short timeouts and no retries, so a dead or
        partitioned server costs a poll one second, not a minute."""
        settings: dict[str, Any] = {
            "socket_connect_timeout": 1,
            "socket_timeout": 2,
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": True,
            "password": self.password,
        }
        settings.update(options)
        return redis.Redis(self.host, self.port, **settings)

    def answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def replication(self) -> dict[str, Any]:
        """``INFO replication``: role, master_host, master_port, master_link_status..."""
        with self.client() as client:
            return dict(client.info("replication"))


@dataclass
class Topology:
    """The five servers and the waits a failover test needs. Use ``sentinel_topology()``,
    or ``start()`` and ``stop()``.

    Measured here (2 cores): ready about 3 s after start; ``kill -9`` of the primary to
    a promoted replica about 2.5 s. An old primary's rejoin takes 10 to 25 s, set by
    Sentinel itself: it demotes a returning master 8 s after it reappears, and learns a
    replica's link state from INFO every 10 s."""

    root: Path  # the folder of the default place (loopback); hosts bring their own
    master_name: str = MASTER
    password: str | None = None
    sentinel_password: str | None = None
    data_places: Sequence[Place] | None = None  # two: the first starts as primary
    sentinel_places: Sequence[Place] | None = None  # three
    # 1 s flapped under load (CI): a sentinel whose fresh link to the just-promoted primary
    # took over a second to answer called it down and failed over again, to the killed
    # server just restarted
    down_after_ms: int = 2000
    failover_timeout_ms: int = 4000
    persistent: bool = False  # data servers keep an AOF, so a restart brings back old data
    data: list[Server] = field(default_factory=list)
    sentinels: list[Server] = field(default_factory=list)
    stopped: list[Server] = field(default_factory=list)  # replicas stop_replica() stopped

    def start(self) -> "Topology":
        """Primary, then replica (linked), then the sentinels, which find the replica at
        their first look; returns once all of them agree (``wait_ready``)."""
        local = Loopback(self.root)
        data_places = list(self.data_places or [local, local])
        sentinel_places = list(self.sentinel_places or [local, local, local])
        assert len(data_places) == 2 and len(sentinel_places) == 3, "2 data places, 3 sentinel"
        for n, place in enumerate(data_places, 1):
            self.data.append(self._server(f"redis-{n}", place, sentinel=False))
        for n, place in enumerate(sentinel_places, 1):
            self.sentinels.append(self._server(f"sentinel-{n}", place, sentinel=True))
        primary, replica = self.data
        self._write_data_conf(primary, None)
        self._write_data_conf(replica, primary)
        for sentinel in self.sentinels:
            self._write_sentinel_conf(sentinel, primary)
        primary.start()
        replica.start()
        poll(lambda: self._linked(replica, primary), 30, f"{replica.name} synced to primary")
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_ready()
        return self

    def stop(self) -> None:
        """Kill every server (nothing to keep) and reap it."""
        for server in self.sentinels + self.data:
            server.stop(signal.SIGKILL)

    def _server(self, name: str, place: Place, *, sentinel: bool) -> Server:
        folder = place.dir / name
        folder.mkdir(parents=True, exist_ok=True)
        password = self.sentinel_password if sentinel else self.password
        taken = {server.address for server in self.data + self.sentinels}
        port = place.free_port()
        while f"{place.address}:{port}" in taken:  # a free port, asked twice, may repeat
            port = place.free_port()
        return Server(name, place, port, folder, sentinel, password)

    def _common_conf(self, server: Server) -> list[str]:
        return [
            f"port {server.port}",
            f"bind {server.host}",
            "protected-mode no",  # peers on other hosts are clients too
            f'dir "{server.dir}"',
            'logfile ""',
            "daemonize no",
        ]

    def _write_data_conf(self, server: Server, primary: Server | None) -> None:
        lines = [
            *self._common_conf(server),
            'save ""',
            f"appendonly {'yes' if self.persistent else 'no'}",
            "appendfsync always",
            "repl-diskless-sync yes",
            "repl-diskless-sync-delay 0",  # a (re)joining replica syncs at once
            "min-replicas-to-write 0",
        ]
        if self.password:
            lines += [f'requirepass "{self.password}"', f'masterauth "{self.password}"']
        if primary is not None:
            lines.append(f"replicaof {primary.host} {primary.port}")
        server.conf.write_text("\n".join(lines) + "\n")

    def _write_sentinel_conf(self, server: Server, primary: Server) -> None:
        name = self.master_name
        lines = [
            *self._common_conf(server),
            f"sentinel monitor {name} {primary.host} {primary.port} {QUORUM}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.password:
            lines.append(f'sentinel auth-pass {name} "{self.password}"')
        if self.sentinel_password:  # asked of clients, and given to the other sentinels
            lines.append(f'requirepass "{self.sentinel_password}"')
        server.conf.write_text("\n".join(lines) + "\n")

    # --- what clients are told -----------------------------------------------------------

    def sentinel_addresses(self) -> list[str]:
        """``host:port`` of each sentinel, as ``REDIS_SENTINELS`` lists them."""
        return [sentinel.address for sentinel in self.sentinels]

    def redis_sentinel(self, **connection: Any) -> redis.sentinel.Sentinel:
        """redis-py's ``Sentinel`` for this topology, each password in its place: the
        sentinels' in ``sentinel_kwargs``, the data servers' in the connection options."""
        hosts = [(sentinel.host, sentinel.port) for sentinel in self.sentinels]
        sentinel_kwargs = {"password": self.sentinel_password, "socket_timeout": 2}
        options: dict[str, Any] = {"password": self.password, "socket_timeout": 5}
        options.update(connection)
        return redis.sentinel.Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **options)

    # --- what the sentinels say -----------------------------------------------------------

    def _by_address(self, address: str) -> Server:
        for server in self.data:
            if server.address == address:
                return server
        raise NotYet(f"master {address} is none of {[s.address for s in self.data]}")

    def _answering(self) -> list[Server]:
        """The sentinels that answer now (a dead or partitioned one does not)."""
        answering = [
            sentinel for sentinel in self.sentinels if sentinel.running and sentinel.answers()
        ]
        if len(answering) < QUORUM:
            raise NotYet(f"only {len(answering)} sentinels answer")
        return answering

    def _agreed_master(self, answering: list[Server]) -> Server:
        seen = {
            sentinel.name: "{}:{}".format(*_ask(sentinel, _master_address(self.master_name)))
            for sentinel in answering
        }
        if len(set(seen.values())) != 1:
            raise NotYet(f"sentinels disagree on the master: {seen}")
        return self._by_address(next(iter(seen.values())))

    def primary(self) -> Server:
        """The data server every answering sentinel names as master (they must agree)."""
        return poll(lambda: self._agreed_master(self._answering()), 5, "an agreed master")

    def replicas(self) -> list[Server]:
        """The running data servers other than the primary."""
        primary = self.primary()
        return [server for server in self.data if server is not primary and server.running]

    # --- waits ------------------------------------------------------------------------

    def wait_ready(self, timeout: float = 45) -> Server:
        """Until the topology is whole: every sentinel answers and names the same master,
        which says it is master; every other running data server is its replica with the
        link up; every sentinel sees that replica and the other two sentinels healthy
        (none down, no failover in progress) and a quorum (CKQUORUM). Returns the primary."""
        return poll(self._ready, timeout, "sentinels to agree on master and replica")

    def _ready(self) -> Server:
        answering = self._answering()
        if len(answering) != len(self.sentinels):
            raise NotYet(f"{len(answering)} of {len(self.sentinels)} sentinels answer")
        primary = self._agreed_master(answering)
        if not primary.running or _role(primary) != "master":
            raise NotYet(f"{primary.name} does not say it is master")
        replicas = [s for s in self.data if s is not primary and s.running]
        for replica in replicas:
            self._linked(replica, primary)
        expected = {replica.address for replica in replicas}
        for sentinel in answering:
            view = _ask(sentinel, _view(self.master_name))
            if view.master_flags != "master":
                raise NotYet(f"{sentinel.name} sees the master as {view.master_flags}")
            healthy = {
                address
                for address, flags, link in view.replicas
                if flags == "slave" and link == "ok"
            }
            if not expected <= healthy:
                raise NotYet(f"{sentinel.name} sees replicas {view.replicas}")
            if len(view.sentinels) != len(self.sentinels) - 1 or any(
                flags != "sentinel" for _, flags in view.sentinels
            ):
                raise NotYet(f"{sentinel.name} sees sentinels {view.sentinels}")
        return primary

    def _linked(self, replica: Server, primary: Server) -> None:
        try:
            info = replica.replication()
        except redis.RedisError as error:
            raise NotYet(f"{replica.name}: {error}") from None
        where = f"{info.get('master_host')}:{info.get('master_port')}"
        if info.get("role") != "slave" or where != primary.address:
            raise NotYet(f"{replica.name} is {info.get('role')} of {where}, not of {primary.name}")
        if info.get("master_link_status") != "up":
            raise NotYet(f"{replica.name}'s link to {primary.name} is down")

    def kill_primary(self) -> Server:
        """``kill -9`` the current primary (the sentinels' agreed master); returns it."""
        primary = self.primary()
        primary.stop(signal.SIGKILL)
        return primary

    def wait_failover(self, old: Server, timeout: float = 60) -> str:
        """Until every answering sentinel (at least a quorum) names a master other than
        ``old`` and that server says it is master; returns its ``host:port``."""

        def promoted() -> str:
            master = self._agreed_master(self._answering())
            if master is old:
                raise NotYet(f"sentinels still name {old.name}")
            if not master.running or _role(master) != "master":
                raise NotYet(f"{master.name} named but does not say it is master yet")
            return master.address

        return poll(promoted, timeout, f"a failover away from {old.name}")

    def stop_replica(self) -> Server:
        """Shut the replica down (SIGTERM); ``start_replica()`` brings it back."""
        replicas = self.replicas()
        assert replicas, "no running replica"
        replica = replicas[0]
        replica.stop(signal.SIGTERM)
        self.stopped.append(replica)
        return replica

    def start_replica(self, timeout: float = 45) -> Server:
        """Start the replica ``stop_replica()`` stopped; returns once it is linked and the
        sentinels see it."""
        replica = self.stopped.pop()
        self.rejoin(replica, timeout)
        return replica

    def rejoin(self, server: Server, timeout: float = 45) -> None:
        """Start a stopped data server (an old primary, a stopped replica) from its config
        file; returns once it is a replica of the current primary, synced, and every
        sentinel sees it. An old primary starts as a master and is demoted by Sentinel
        (which waits about 8 s after it reappears), then resyncs from the new primary."""
        server.start()
        primary = self.wait_ready(timeout)
        assert server is not primary, f"{server.name} came back as the primary"


@dataclass
class View:
    """What one sentinel says of the master it monitors."""

    master_flags: str
    replicas: list[tuple[str, str, str]]  # host:port, flags, master-link-status
    sentinels: list[tuple[str, str]]  # host:port, flags


def _ask(server: Server, question: Callable[[redis.Redis], T]) -> T:
    """One question to one server over a fresh connection; an error means not yet."""
    try:
        with server.client() as client:
            return question(client)
    except redis.RedisError as error:
        raise NotYet(f"{server.name}: {error!r}") from None


def _master_address(name: str) -> Callable[[redis.Redis], tuple[str, int]]:
    def question(client: redis.Redis) -> tuple[str, int]:
        answer: Any = client.sentinel_get_master_addr_by_name(name)
        if not answer:
            raise NotYet(f"no master named {name} known")
        return str(answer[0]), int(answer[1])

    return question


def _view(name: str) -> Callable[[redis.Redis], View]:
    def question(client: redis.Redis) -> View:
        master: Any = client.sentinel_master(name)
        client.sentinel_ckquorum(name)  # raises unless a quorum and a majority are reachable
        replicas = [
            (f"{r['ip']}:{r['port']}", r["flags"], r.get("master-link-status", ""))
            for r in _records(client.sentinel_slaves(name))
        ]
        found = _records(client.sentinel_sentinels(name))
        others = [(f"{o['ip']}:{o['port']}", o["flags"]) for o in found]
        return View(master["flags"], replicas, others)

    return question


def _records(answer: Any) -> list[dict[str, Any]]:
    """redis-py's parsed SENTINEL REPLICAS / SENTINELS answer (typed loosely upstream)."""
    assert isinstance(answer, list), answer
    return answer


def _role(server: Server) -> str:
    try:
        return str(server.replication().get("role"))
    except redis.RedisError:
        return "unreachable"


@contextmanager
def sentinel_topology(root: Path, **options: Any) -> Iterator[Topology]:
    """A started ``Topology`` (its options as keywords), every server killed on exit."""
    topology = Topology(root, **options)
    try:
        yield topology.start()
    finally:
        topology.stop()
