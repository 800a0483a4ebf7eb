"""The Redis clients through Sentinel, as real processes and servers see them: a primary
that stops answering without refusing anything (SIGSTOP: a partition, as a client sees
it) is left for the one the sentinels name, within the same command (redis-py 8.1's
retries would keep reconnecting to the old address: redis/redis-py#3874, worked
around in shared/redisdb/client.py); and a malformed ``REDIS_SENTINELS`` stops the
api and the worker at once with one line."""

import asyncio
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import redis

from shared.config import Settings
from shared.redisdb.client import API_RETRIES, RedisTarget, connect, connect_async
from tests.procs import BIN, REPO, service_env
from tests.sentinel import sentinel_topology

pytestmark = pytest.mark.e2e


def test_a_silent_primary_is_left_for_the_new_one_within_the_same_command(
    tmp_path: Path,
) -> None:
    with sentinel_topology(tmp_path, password="pw") as top:
        settings = Settings(
            redis_url="redis://:pw@127.0.0.1:1/0",
            redis_sentinels=",".join(top.sentinel_addresses()),
        )
        target = RedisTarget.of(settings)
        client = connect(target, retries=API_RETRIES)
        client.set("before", "1")  # a pooled connection to the primary
        old = top.primary()
        outcome: dict[str, object] = {}

        async def with_asyncio() -> None:
            aclient = connect_async(target, retries=API_RETRIES)
            await aclient.set("before-async", "1")
            frozen.wait()
            try:
                outcome["async"] = await aclient.set("during-async", "1")
            except redis.RedisError as exc:
                outcome["async"] = exc
            finally:
                await aclient.aclose()

        frozen = threading.Event()
        other = threading.Thread(target=lambda: asyncio.run(with_asyncio()))
        other.start()
        assert old.proc is not None
        os.killpg(old.proc.pid, signal.SIGSTOP)  # nothing refuses, nothing answers
        frozen.set()
        try:
            # times out on the old primary, then asks the sentinels on its retry
            assert client.set("during", "1")
            other.join(60)
            assert outcome["async"] is True, outcome
            new = top.primary()
            assert new is not old
            with new.client() as primary:
                assert primary.mget("before", "during", "during-async") == ["1", "1", "1"]
            connection = client.connection_pool.get_connection()
            assert (connection.host, connection.port) == (new.host, new.port)
            client.connection_pool.release(connection)
        finally:
            os.killpg(old.proc.pid, signal.SIGCONT)
            other.join(60)
            client.close()


@pytest.mark.parametrize(
    ("argv", "sentinels", "says"),
    [
        (
            [str(BIN / "uvicorn"), "api.main:app", "--port", "1"],
            "127.0.0.1:26379,",  # a trailing separator: kombu would add localhost
            "entry 2 of '127.0.0.1:26379,' is empty",
        ),
        (
            [str(BIN / "celery"), "-A", "worker.app", "worker"],
            "127.0.0.1",  # no port: kombu would fill in 26379
            "'127.0.0.1' has no port",
        ),
    ],
    ids=["api", "worker"],
)
def test_a_malformed_sentinel_list_stops_the_process_with_one_line(
    tmp_path: Path, argv: list[str], sentinels: str, says: str
) -> None:
    env = service_env("redis://127.0.0.1:1/0", tmp_path / "models", REDIS_SENTINELS=sentinels)
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: REDIS_SENTINELS: ") and says in lines[0], lines
