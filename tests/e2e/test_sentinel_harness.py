"""The Sentinel harness itself (tests/sentinel.py): a write confirmed by ``WAIT 1``
survives ``kill -9`` of the primary, Sentinel promotes the replica, the old primary
rejoins as a replica; the replica stops and starts; the same topology on network
namespace hosts fails over when the primary's host is partitioned."""

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.netns import Network
from tests.sentinel import MASTER, Topology, sentinel_topology

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _redis_server() -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server not found: apt-get install redis-server")


def test_a_write_kept_twice_survives_the_primary_killed(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    with sentinel_topology(tmp_path, password="data-secret", sentinel_password="s3nt") as top:
        first = top.primary()
        assert len(top.sentinel_addresses()) == 3
        assert all(address.startswith("127.0.0.1:") for address in top.sentinel_addresses())
        # each password is enforced where it belongs
        with pytest.raises(redis.AuthenticationError):
            first.client(password=None).ping()
        with pytest.raises(redis.AuthenticationError):
            top.sentinels[0].client(password=None).ping()
        with pytest.raises(redis.AuthenticationError):  # the data password is not the sentinels'
            top.sentinels[0].client(password="data-secret").ping()

        sentinel = top.redis_sentinel()
        master = sentinel.master_for(MASTER, decode_responses=True)
        master.set("job:1", "queued")
        assert master.execute_command("WAIT", 1, 5000) == 1  # the replica has it

        killed_at = time.monotonic()
        old = top.kill_primary()
        assert old is first and not old.running
        new_address = top.wait_failover(old)
        seconds = time.monotonic() - killed_at
        record_property("failover_seconds", round(seconds, 2))
        print(f"failover: {seconds:.1f} s from kill -9 to a promoted primary", file=sys.stderr)

        assert new_address != old.address
        assert top.primary().address == new_address
        host, port = new_address.rsplit(":", 1)
        assert sentinel.discover_master(MASTER) == (host, int(port))
        assert master.get("job:1") == "queued"  # the same client follows the failover
        master.set("job:2", "queued")

        top.rejoin(old)
        info = old.replication()
        assert (
            info["role"] == "slave"
            and f"{info['master_host']}:{info['master_port']}" == new_address
        )
        assert top.primary().address == new_address  # it came back without taking over
        assert old.client().mget("job:1", "job:2") == ["queued", "queued"]  # resynced


def test_stop_and_start_the_replica(tmp_path: Path) -> None:
    with sentinel_topology(tmp_path) as top:
        primary = top.primary()
        master = top.redis_sentinel().master_for(MASTER, decode_responses=True)
        replica = top.stop_replica()
        assert not replica.running and replica is not primary
        master.set("alone", "1")  # min-replicas-to-write 0: accepted without a replica
        assert master.execute_command("WAIT", 1, 300) == 0  # but not confirmed

        assert top.start_replica() is replica
        assert master.execute_command("WAIT", 1, 5000) == 1
        assert replica.client().get("alone") == "1"
        assert top.primary() is primary  # no failover for a replica's absence


def test_on_hosts_a_partitioned_primary_is_replaced_and_demoted(net: Network) -> None:
    data = [net.host("redis-a"), net.host("redis-b")]
    watchers = [net.host(f"sentinel-{n}") for n in (1, 2, 3)]
    top = Topology(net.root / "topology", data_places=data, sentinel_places=watchers)
    top.start()
    try:
        assert [s.host for s in top.data] == [h.address for h in data]
        pairs = zip(watchers, top.sentinels, strict=True)
        assert top.sentinel_addresses() == [f"{h.address}:{s.port}" for h, s in pairs]
        net.assert_private_folders()
        old = top.primary()
        assert old.place is data[0]
        # the test process reaches the hosts through the bridge, as a client would
        master = top.redis_sentinel().master_for(MASTER, decode_responses=True)
        master.set("kept", "1")
        assert master.execute_command("WAIT", 1, 5000) == 1

        cut_at = time.monotonic()
        data[0].partition()
        new_address = top.wait_failover(old)
        seconds = time.monotonic() - cut_at
        print(f"failover: {seconds:.1f} s from partition to a promoted primary", file=sys.stderr)
        assert new_address == top.data[1].address
        # the cut-off primary still takes a write from a client on its own host: lost later
        local = data[0].run(["redis-cli", "-h", old.host, "-p", str(old.port), "SET", "lost", "1"])
        assert local.stdout.strip() == "OK", local
        # a new client: a pooled connection to the cut-off primary times out, and redis-py
        # 8.1 retries it at the old address (redis/redis-py#3874); the kill -9 test's
        # connections were reset, so its client followed at once
        master = top.redis_sentinel().master_for(MASTER, decode_responses=True)
        assert master.get("kept") == "1"

        data[0].heal()
        top.wait_ready(timeout=60)  # Sentinel demotes it; it resyncs from the new primary
        assert old.replication()["role"] == "slave"
        assert old.client().get("lost") is None
        assert old.client().get("kept") == "1"
    finally:
        top.stop()
