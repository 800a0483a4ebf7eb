"""Hosts as Linux network namespaces on a bridge, for tests that need several machines.

``with Network(tmp_path) as net:`` makes a bridge in the root namespace; each
``net.host("api-a")`` is a namespace with its own loopback and one veth into the bridge,
an address from a private /24 chosen for this run, and a private folder (``host.dir``).
Processes run inside with ``host.popen(...)`` (``ip netns exec``); ``host.partition()``
takes the host's link down from inside (its peers' packets go nowhere, its own connects
fail) and ``host.heal()`` brings it back; ``host.kill_all()`` is a host lost at once.

What the network reaches: the hosts' addresses and the bridge's own (``net.address``,
so the test process can talk to a host as an operator's machine would). Nothing else:
no NAT, no forwarding set up, no default route in a namespace, IPv6 off inside. (A
server bound to a host's address serves its peers; redis-server only with a password or
``protected-mode no``, its protected mode admits loopback clients only.) A
namespace shares the filesystem with everything, so ``net.assert_private_folders()``
checks, from /proc, that no host's processes use another host's folder.

Names start with ``mn<pid>x<n>`` (interface names stay within 15 characters), so a
leftover of a crashed run (its pid gone, or our own prefix) is recognised and removed
when the next network starts. Teardown kills every process of every host, deletes the
namespaces (their veths go with them) and the bridge, also after a failing test.

Needs root and iproute2 (``ip``): ``require_netns()`` skips with the reason otherwise,
and fails instead under ``CI=true``, where the tests run as root and must not be skipped.
"""

import fcntl
import ipaddress
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import pytest

from tests.procs import free_port, wait_until

IP = shutil.which("ip") or "/usr/sbin/ip"  # absolute: a caller's env may carry no PATH
IN_CI = os.environ.get("CI", "").lower() == "true"
NAME = re.compile(r"^mn(?P<pid>\d+)x(?P<n>\d+)")  # every namespace, link and rule we make
FIRST_PORT = 20000  # ports handed out inside a namespace: below the ephemeral range
# Subnets tried, 10.128.0.0/24 to 10.254.255.0/24, starting from a point set by the pid so
# parallel runs rarely even meet; each candidate is checked against the machine's own
# addresses and routes (which include every other run's bridge) under a lock.
SUBNETS = [ipaddress.IPv4Network(f"10.{a}.{b}.0/24") for a in range(128, 255) for b in range(256)]
LOCK = Path("/run/lock" if Path("/run/lock").is_dir() else tempfile.gettempdir())
LOCK_FILE = LOCK / "mnist-service-netns.lock"

_networks = itertools.count()


class NetnsError(RuntimeError):
    """An ``ip`` command failed: its arguments and its stderr."""


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS``; bounded in time, stderr in the error."""
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {shlex.join(args)}: {done.stderr.strip()}")
    return done.stdout


# --- availability -----------------------------------------------------------------------

_probed: str | None = None


def unavailable_reason() -> str | None:
    """Why namespaces can't be made here (not root, no ``ip``, no permission), or None."""
    global _probed
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not Path(IP).is_file():
        return "no `ip` command: apt-get install iproute2"
    if _probed is None:
        probe = f"mn{os.getpid()}x{next(_networks)}-probe"
        try:
            ip("netns", "add", probe)
            ip("netns", "del", probe)
            _probed = ""
        except (NetnsError, OSError, subprocess.SubprocessError) as error:
            _probed = f"cannot create a network namespace: {error}"
    return _probed or None


def require_netns() -> None:
    """Skip the test with the reason where namespaces can't be had; under CI=true fail."""
    reason = unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


# --- places: where a process runs -------------------------------------------------------


def _start(
    argv: Sequence[str], env: dict[str, str] | None, log: Path | None, cwd: Path
) -> subprocess.Popen[bytes]:
    """A process in a session (process group) of its own, output to ``log``."""
    out: IO[bytes] | int = log.open("ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if not isinstance(out, int):
            out.close()


def _kill_groups(procs: Sequence[subprocess.Popen[bytes]], sig: int) -> None:
    for proc in procs:
        if proc.poll() is None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)


def _reap(procs: Sequence[subprocess.Popen[bytes]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{what}: pid {proc.pid} still running after {timeout}s") from None


class Place(ABC):
    """Where a server runs: an address to bind, a folder of its own, a way to start a
    process there. ``Loopback`` and ``Host`` are the two; harnesses take either. Both
    start a process alike: in a process group of its own, working in ``cwd`` (default
    the place's folder), output appended to ``log``, remembered in ``procs`` for
    ``kill_all``; a place says only how a command runs there (``_exec``)."""

    name: str
    address: str
    dir: Path
    procs: list[subprocess.Popen[bytes]]

    def popen(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        self.dir.mkdir(parents=True, exist_ok=True)
        proc = _start(self._exec(argv), env, log, cwd or self.dir)
        self.procs.append(proc)
        return proc

    def _exec(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    @abstractmethod
    def free_port(self) -> int: ...

    @abstractmethod
    def kill_all(self, sig: int = signal.SIGKILL) -> None: ...


@dataclass
class Loopback(Place):
    """The test's own namespace as a place: 127.0.0.1, free loopback ports."""

    dir: Path
    name: str = "loopback"
    address: str = "127.0.0.1"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def free_port(self) -> int:
        return free_port()

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process group this place started; after SIGKILL, reap them."""
        _kill_groups(self.procs, sig)
        if sig == signal.SIGKILL:
            _reap(self.procs, 10, "loopback kill_all")


# --- hosts ------------------------------------------------------------------------------


@dataclass
class Host(Place):
    """One machine: a network namespace with ``eth0`` on the bridge, and a folder."""

    name: str
    netns: str
    address: str
    dir: Path
    veth: str  # the root namespace's end, a port of the bridge
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    partitioned: bool = False
    _ports: Iterator[int] = field(default_factory=lambda: itertools.count(FIRST_PORT))

    def run(
        self, argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace to its end; output captured, not checked."""
        return subprocess.run(
            self._exec(argv),
            env=env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _exec(self, argv: Sequence[str]) -> list[str]:
        """Inside the namespace: ``ip netns exec`` execs it, so the pid is the program's."""
        return [IP, "netns", "exec", self.netns, *argv]

    def free_port(self) -> int:
        """A port nothing else on this host uses: the namespace is new and only this
        harness hands ports out, so a counter is enough."""
        return next(self._ports)

    def pids(self) -> list[int]:
        """Every process inside the namespace, whoever started it."""
        return [int(pid) for pid in ip("netns", "pids", self.netns, check=False).split()]

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Signal everything on the host: the process groups it started and anything
        else inside its namespace (a child that left its group). After SIGKILL, waits
        until the namespace holds no process."""
        _kill_groups(self.procs, sig)
        for pid in self.pids():
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig == signal.SIGKILL:
            _reap(self.procs, 10, f"{self.name} kill_all")
            wait_until(lambda: not self.pids(), 10, f"no process left on host {self.name}")

    def partition(self) -> None:
        """Cut the host off: its link down from inside. Its own connects fail at once
        (no route), its peers' packets to it are lost, established connections stall."""
        ip("-n", self.netns, "link", "set", "eth0", "down")
        self.partitioned = True

    def heal(self) -> None:
        """The link up again; returns once the bridge forwards to it."""
        ip("-n", self.netns, "link", "set", "eth0", "up")
        wait_until(self._linked, 10, f"host {self.name}'s link forwarding again")
        self.partitioned = False

    def _linked(self) -> bool:
        state = Path(f"/sys/class/net/{self.veth}/brport/state")
        operstate = Path(f"/sys/class/net/{self.veth}/operstate")
        routes = ip("-n", self.netns, "-4", "route", "show", "dev", "eth0", check=False)
        return (
            operstate.read_text().strip() == "up"
            and state.read_text().strip() == "3"  # BR_STATE_FORWARDING
            and "scope link" in routes
        )


class Network:
    """A bridge and its hosts; a context manager that removes them all on exit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = f"mn{os.getpid()}x{next(_networks)}"
        self.bridge = f"{self.prefix}b"
        self.hosts: dict[str, Host] = {}
        self.subnet: ipaddress.IPv4Network | None = None
        self.firewall_rule: list[str] | None = None

    @property
    def address(self) -> str:
        """The bridge's address in the root namespace: how the test process reaches hosts."""
        assert self.subnet is not None, "the network is not up"
        return str(self.subnet.network_address + 1)

    def __enter__(self) -> "Network":
        self.root.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.prefix)
        try:
            with _locked():
                self.subnet = _free_subnet()
                ip("link", "add", self.bridge, "type", "bridge")
                ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
            _disable_ipv6(Path(f"/proc/sys/net/ipv6/conf/{self.bridge}/disable_ipv6"))
            ip("link", "set", self.bridge, "up")
            self.firewall_rule = _allow_bridged(self.bridge)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except Exception as teardown:
            if error is None:
                raise
            error.add_note(f"and the network's teardown failed too: {teardown}")

    def host(self, name: str) -> Host:
        """A new host: namespace, veth into the bridge, the next address, lo up, a folder."""
        assert self.subnet is not None, "use the network inside `with`"
        assert name not in self.hosts, f"host {name} exists"
        index = len(self.hosts)
        address = self.subnet.network_address + 2 + index
        assert address < self.subnet.broadcast_address, "no address left in the /24"
        netns, veth, peer = (
            f"{self.prefix}-{name}",
            f"{self.prefix}h{index}",
            f"{self.prefix}p{index}",
        )
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        host = Host(name, netns, str(address), folder, veth)
        self.hosts[name] = host  # registered first: close() removes a half-made host too
        ip("netns", "add", netns)
        # no IPv6 inside: the hosts talk over their IPv4 addresses and nothing else
        ipv6_off = "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"
        ipv6_off += "; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"
        subprocess.run(
            [IP, "netns", "exec", netns, "sh", "-c", ipv6_off],
            capture_output=True,
            timeout=30,
            check=False,
        )
        ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", netns)
        ip("link", "set", veth, "master", self.bridge)
        ip("link", "set", veth, "up")
        ip("-n", netns, "link", "set", peer, "name", "eth0")
        ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        ip("-n", netns, "link", "set", "lo", "up")
        wait_until(host._linked, 10, f"host {name}'s link forwarding")
        return host

    def folders_in_use(self) -> dict[str, set[Path]]:
        """Per host, the paths under the network's root its processes use: working
        folders, open files, and paths named in their arguments or environment."""
        root = self.root.resolve()
        return {name: _paths_used(host.pids(), root) for name, host in self.hosts.items()}

    def assert_private_folders(self) -> None:
        """Fail if any host's processes use a path under the root outside its own folder
        (so under another host's, or shared); list each such use."""
        wrong = [
            f"{name} uses {path}"
            for name, paths in self.folders_in_use().items()
            for path in sorted(paths)
            if not path.is_relative_to(self.hosts[name].dir.resolve())
        ]
        assert not wrong, "folders not private to their host: " + "; ".join(wrong)

    def close(self) -> None:
        """Kill every host's processes, delete namespaces, veths, the bridge, the rule."""
        for host in self.hosts.values():
            with suppress(NetnsError):  # a half-made host may have no namespace yet
                host.kill_all(signal.SIGKILL)
        remove_leftovers(self.prefix)  # the namespaces, the bridge, the iptables rule
        self.firewall_rule = None
        left = _names_left(self.prefix)
        if left:
            raise NetnsError(f"teardown left {', '.join(left)}")


# --- internals --------------------------------------------------------------------------


@contextmanager
def _locked() -> Iterator[None]:
    """One run at a time chooses a subnet and takes it (the bridge's address)."""
    with LOCK_FILE.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_subnet() -> ipaddress.IPv4Network:
    """The first candidate /24, from a pid-dependent start, that overlaps none of the
    machine's addresses or routes (every table)."""
    taken = []
    for line in ip("-o", "-4", "addr", "show").splitlines():
        fields = line.split()
        taken.append(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).network)
    for line in ip("-4", "route", "show", "table", "all").splitlines():
        for word in line.split()[:2]:
            with suppress(ValueError):
                taken.append(ipaddress.IPv4Network(word, strict=False))
                break
    start = (os.getpid() * 7919) % len(SUBNETS)
    for subnet in SUBNETS[start:] + SUBNETS[:start]:
        if not any(subnet.overlaps(other) for other in taken if other.prefixlen > 0):
            return subnet
    raise NetnsError("no free /24 in 10.128.0.0/9")


def _disable_ipv6(setting: Path) -> None:
    with suppress(OSError):
        setting.write_text("1")


def _allow_bridged(bridge: str) -> list[str] | None:
    """Where bridged frames go through iptables (br_netfilter loaded) and the FORWARD
    chain is not a bare ACCEPT (Docker sets DROP), hosts could not talk: accept traffic
    from this bridge to itself, only. Returns the rule to delete at teardown."""
    calls = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if shutil.which("iptables") is None or not calls.exists() or calls.read_text().strip() != "1":
        return None
    chain = _iptables("-S", "FORWARD").split("\n")
    if [line for line in chain if line.strip()] == ["-P FORWARD ACCEPT"]:
        return None
    rule = ["FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", bridge]
    rule += ["-j", "ACCEPT"]
    _iptables("-I", *rule)
    return rule


def _iptables(*args: str) -> str:
    done = subprocess.run(["iptables", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetnsError(f"iptables {shlex.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _made_under(name: str, prefix: str) -> bool:
    match = NAME.match(name)
    return match is not None and f"mn{match['pid']}x{match['n']}" == prefix


def _is_leftover(name: str, prefix: str) -> bool:
    """Ours to remove: made under ``prefix``, or by a process that no longer exists."""
    match = NAME.match(name)
    if match is None:
        return False
    if _made_under(name, prefix):
        return True
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list", check=False).splitlines() if line]


def _links() -> list[str]:
    names = []
    for line in ip("-o", "link", "show", check=False).splitlines():
        # "12: mn1x0h0@if11: <...": the name, less the peer's index
        names.append(line.split(":")[1].strip().split("@")[0])
    return names


def _names_left(prefix: str) -> list[str]:
    names = _namespaces() + _links()
    if shutil.which("iptables"):
        names += [_comment(line) or "" for line in _forward_rules()]
    return [name for name in names if _made_under(name, prefix)]


def _forward_rules() -> list[str]:
    with suppress(NetnsError):
        return [line for line in _iptables("-S", "FORWARD").splitlines() if line.startswith("-A")]
    return []


def _comment(rule: str) -> str | None:
    found = re.search(r"--comment (\S+)", rule)
    return found[1] if found else None


def remove_leftovers(prefix: str) -> None:
    """Remove what ``prefix`` or a dead process left: processes in those namespaces
    (killed first: a namespace lives on while a process is in it), namespaces, links,
    iptables rules."""
    for netns in filter(lambda name: _is_leftover(name, prefix), _namespaces()):
        _empty(netns)
        ip("netns", "del", netns, check=False)
    for link in filter(lambda name: _is_leftover(name, prefix), _links()):
        ip("link", "del", link, check=False)  # a veth's peer may have gone with it
    if shutil.which("iptables"):
        for rule in _forward_rules():
            if _is_leftover(_comment(rule) or "", prefix):
                _iptables("-D", *shlex.split(rule)[1:])


def _empty(netns: str) -> None:
    """Kill every process in ``netns``; return once none is left."""

    def pids() -> list[int]:
        return [int(pid) for pid in ip("netns", "pids", netns, check=False).split()]

    for pid in pids():
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pids(), 10, f"no process left in namespace {netns}")


def _paths_used(pids: Sequence[int], root: Path) -> set[Path]:
    """Paths under ``root`` that these processes use: cwd, open files, and words of
    their command lines and environments that name a path under it."""
    used: set[Path] = set()
    for pid in pids:
        proc = Path(f"/proc/{pid}")
        candidates: list[str] = []
        with suppress(OSError):
            candidates.append(os.readlink(proc / "cwd"))
        with suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with suppress(OSError):
                    candidates.append(os.readlink(fd))
        with suppress(OSError):
            for blob in ((proc / "cmdline").read_bytes(), (proc / "environ").read_bytes()):
                for entry in blob.decode(errors="replace").split("\0"):
                    candidates.extend(re.split(r"[=:,; ]", entry))
        for candidate in candidates:
            path = Path(candidate.removesuffix(" (deleted)"))
            if path.is_absolute() and path.resolve().is_relative_to(root):
                used.add(path.resolve())
    return used
