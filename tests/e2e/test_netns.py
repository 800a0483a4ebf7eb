"""The several-hosts harness itself (tests/netns.py): hosts talk over TCP and only to each
other, a partition stops the traffic and healing restores it, teardown leaves nothing
behind (also after a failure, also a crashed run's leftovers), folders stay private."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.netns import Host, Network, ip, require_netns
from tests.procs import wait_until

pytestmark = pytest.mark.e2e

# Run inside a host: connect to HOST:PORT, print what happened (PONG, or the error's kind).
PING = """
import errno, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_connection((host, port), timeout=2) as s:
        s.sendall(b"PING\\r\\n")
        print(s.recv(64).decode().strip())
except TimeoutError:
    print("timeout")
except OSError as error:
    print(errno.errorcode.get(error.errno or 0, repr(error)))
"""
ONCE = Retry(NoBackoff(), 0)  # a probe tries once: a partitioned host must not cost retries


def start_redis_on(host: Host) -> int:
    """A redis-server bound to the host's address (protected mode off: it serves peers)."""
    port = host.free_port()
    binary = shutil.which("redis-server")
    assert binary, "redis-server not found"
    argv = [binary, "--bind", host.address, "--port", str(port), "--save", ""]
    host.popen([*argv, "--protected-mode", "no", "--dir", str(host.dir)], log=host.dir / "r.log")
    return port


def ping_from(host: Host, address: str, port: int) -> str:
    return host.run([sys.executable, "-c", PING, address, str(port)]).stdout.strip()


def answers(address: str, port: int) -> bool:
    """From the test process (the root namespace, through the bridge)."""
    try:
        client = redis.Redis(address, port, socket_timeout=1, socket_connect_timeout=1, retry=ONCE)
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def names() -> str:
    return ip("netns", "list") + ip("-o", "link", "show")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a killed child of ours not yet reaped is a zombie: dead for this purpose
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def test_hosts_talk_to_each_other_and_nowhere_else(net: Network) -> None:
    a, b = net.host("a"), net.host("b")
    assert a.address != b.address and net.subnet is not None
    assert {a.address, b.address, net.address} <= {str(h) for h in net.subnet.hosts()}
    port = start_redis_on(a)
    wait_until(lambda: answers(a.address, port), 10, "redis on host a, from the test process")

    assert ping_from(b, a.address, port) == "+PONG"
    # each host has its own loopback: nothing listens on b's 127.0.0.1:port
    assert ping_from(b, "127.0.0.1", port) == "ECONNREFUSED"
    assert ping_from(a, "127.0.0.1", port) == "ECONNREFUSED"  # a's server is on a.address only
    # no default route: an address beyond the /24 (TEST-NET-3) is refused before any packet
    assert "default" not in b.run(["ip", "-4", "route"]).stdout
    assert ping_from(b, "203.0.113.1", 80) == "ENETUNREACH"
    assert "inet6" not in b.run(["ip", "-o", "addr"]).stdout  # and no IPv6 at all


def test_partition_stops_traffic_and_heal_restores_it(net: Network) -> None:
    a, b, c = net.host("a"), net.host("b"), net.host("c")
    port = start_redis_on(a)
    wait_until(lambda: ping_from(b, a.address, port) == "+PONG", 10, "b reaches a")
    c_port = start_redis_on(c)
    wait_until(lambda: ping_from(a, c.address, c_port) == "+PONG", 10, "a reaches c")

    a.partition()
    assert a.partitioned
    # peers' packets to a go nowhere: the connect times out (or ARP gives up first)
    assert ping_from(b, a.address, port) in {"timeout", "EHOSTUNREACH"}
    assert not answers(a.address, port)
    assert ping_from(a, c.address, c_port) == "ENETUNREACH"  # a's own connects fail at once
    assert ping_from(b, c.address, c_port) == "+PONG"  # the rest of the network carries on

    a.heal()
    assert not a.partitioned
    wait_until(lambda: ping_from(b, a.address, port) == "+PONG", 15, "b reaches a after heal")
    assert ping_from(a, c.address, c_port) == "+PONG"
    assert answers(a.address, port)


def test_kill_all_kills_everything_the_host_runs(net: Network) -> None:
    a, b = net.host("a"), net.host("b")
    # a child that leaves its process group (setsid): found through the namespace
    a.popen(["sh", "-c", "setsid sleep 600 & exec sleep 600"])
    survivor = b.popen(["sleep", "600"])
    wait_until(lambda: len(a.pids()) == 2, 10, "both sleeps on host a")
    pids = a.pids()

    a.kill_all()
    assert a.pids() == []
    assert not any(alive(pid) for pid in pids)
    assert survivor.poll() is None and b.pids() == [survivor.pid]  # other hosts untouched


def test_teardown_leaves_nothing_even_after_a_failure(tmp_path: Path) -> None:
    require_netns()
    with pytest.raises(RuntimeError, match="the test failed"), Network(tmp_path) as net:
        a, b = net.host("a"), net.host("b")
        procs = [a.popen(["sleep", "600"]), b.popen(["sh", "-c", "setsid sleep 600 & wait"])]
        wait_until(lambda: len(b.pids()) == 2, 10, "both processes on host b")
        pids = [proc.pid for proc in procs] + b.pids()
        made = [a.netns, b.netns, a.veth, b.veth, net.bridge]
        assert all(name in names() for name in made)
        raise RuntimeError("the test failed")
    left = names()
    assert not [name for name in made if name in left]
    assert net.prefix not in left
    assert not any(alive(pid) for pid in pids)


def test_a_crashed_runs_leftovers_are_removed_and_live_runs_kept(tmp_path: Path) -> None:
    require_netns()
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert not alive(gone.pid)
    dead = f"mn{gone.pid}x0"
    ip("netns", "add", f"{dead}-crashed")
    ip("link", "add", f"{dead}b", "type", "bridge")
    ip("link", "add", f"{dead}h0", "type", "veth", "peer", "name", f"{dead}p0")
    rule = ["FORWARD", "-i", f"{dead}b", "-m", "comment", "--comment", f"{dead}b", "-j", "ACCEPT"]
    if shutil.which("iptables"):
        subprocess.run(["iptables", "-A", *rule], check=True)
    stray = subprocess.Popen(["ip", "netns", "exec", f"{dead}-crashed", "sleep", "600"])
    wait_until(lambda: ip("netns", "pids", f"{dead}-crashed").split(), 10, "the stray process")
    try:
        with Network(tmp_path / "one") as live, Network(tmp_path / "two") as second:
            left = names()
            assert dead not in left  # namespace, bridge, both veth ends: gone
            if shutil.which("iptables"):
                assert dead not in subprocess.check_output(["iptables", "-S"], text=True)
            stray.wait(10)  # killed, not left running in a deleted namespace
            assert live.bridge in left and second.bridge in left  # a live run's are kept
            assert live.subnet != second.subnet
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
        ip("netns", "del", f"{dead}-crashed", check=False)
        for link in (f"{dead}b", f"{dead}h0"):
            ip("link", "del", link, check=False)
        if shutil.which("iptables"):
            subprocess.run(["iptables", "-D", *rule], capture_output=True, check=False)


def test_folders_are_private_and_the_check_catches_sharing(net: Network) -> None:
    a, b = net.host("api-a"), net.host("worker-1")
    assert a.dir != b.dir and a.dir.is_dir() and b.dir.is_dir()
    assert not a.dir.is_relative_to(b.dir) and not b.dir.is_relative_to(a.dir)
    a.popen(["sleep", "600"], env={**os.environ, "MODEL_DIR": str(a.dir / "models")})
    b.popen(["sleep", "600"], log=b.dir / "sleep.log")
    wait_until(lambda: a.pids() and b.pids(), 10, "a process on each host")
    net.assert_private_folders()
    assert b.dir / "sleep.log" in net.folders_in_use()["worker-1"]

    # the worker's process is pointed at the API host's folder: the check says so
    b.popen(["sleep", "600"], env={**os.environ, "MODEL_DIR": str(a.dir / "models")})
    wait_until(lambda: len(b.pids()) == 2, 10, "the second process on worker-1")
    with pytest.raises(AssertionError, match=f"worker-1 uses {a.dir / 'models'}"):
        net.assert_private_folders()
    b.kill_all()


def test_kill_all_accepts_other_signals(net: Network) -> None:
    """SIGSTOP pauses a host (a stalled machine), SIGCONT resumes it: nothing is reaped."""
    a = net.host("a")
    proc = a.popen(["sleep", "600"])
    wait_until(lambda: a.pids() == [proc.pid], 10, "the sleep on host a")
    a.kill_all(signal.SIGSTOP)
    wait_until(lambda: _state(proc.pid) == "T", 10, "the process stopped")
    a.kill_all(signal.SIGCONT)
    wait_until(lambda: _state(proc.pid) == "S", 10, "the process running again")
    assert proc.poll() is None


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]


def test_a_filtering_forward_chain_is_opened_for_this_bridge_only(tmp_path: Path) -> None:
    """Docker loads br_netfilter and sets FORWARD to DROP, so bridged frames meet
    iptables: the network accepts its own bridge's traffic, and removes that rule after.
    Stood in for by a DROP rule matching only this process's bridges."""
    require_netns()
    calls = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not shutil.which("iptables") or not calls.exists() or calls.read_text().strip() != "1":
        pytest.skip("bridged traffic does not pass iptables here (no br_netfilter)")
    drop = ["FORWARD", "-i", f"mn{os.getpid()}x+", "-j", "DROP"]
    subprocess.run(["iptables", "-A", *drop], check=True)
    try:
        with Network(tmp_path) as net:
            a, b = net.host("a"), net.host("b")
            port = start_redis_on(a)
            wait_until(lambda: ping_from(b, a.address, port) == "+PONG", 10, "b reaches a")
            assert net.firewall_rule is not None
            rule = net.firewall_rule
            subprocess.run(["iptables", "-D", *rule], check=True)  # without it: dropped
            assert ping_from(b, a.address, port) in {"timeout", "EHOSTUNREACH"}
            subprocess.run(["iptables", "-I", *rule], check=True)
            wait_until(lambda: ping_from(b, a.address, port) == "+PONG", 10, "b reaches a")
        rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True)
        assert net.bridge not in rules.stdout
    finally:
        subprocess.run(["iptables", "-D", *drop], check=True)
