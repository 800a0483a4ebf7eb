"""A write acknowledged means kept twice (REDIS_MIN_REPLICAS), against a real primary and
a real replica (two redis-server processes, the replica stopped and started): the one
WAIT rule, each confirmed write's way out when the replica does not confirm (a job
withdrawn, an alias change undone, a registration and a correction left for a retry
to find), READONLY retried until the server takes writes again, and the API's model
index serving its last snapshot while Redis does not answer."""

import asyncio
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis

from shared.config import Settings
from shared.jobs.store import JobStore
from shared.redisdb.client import NotReplicated, Replication, confirm, connect
from shared.redisdb.keys import Keys
from shared.registry.index import ModelIndex
from shared.registry.store import ModelRegistry
from shared.schemas.canary import CanaryRequest
from shared.schemas.feedback import Source, make_file
from shared.schemas.jobs import EpochRecord, Job, JobRequest
from shared.schemas.models import PromoteOption
from shared.schemas.params import TrainParams
from shared.services import Services
from tests.models import register
from tests.procs import free_port, mnist_dir, start_redis, stop, wait_until
from worker.recovery import ServerWatch, recovery_pass

KEYS = Keys("repl:")
WAIT_MS = 1000
"""Generous: on a loaded machine a replica's acknowledgement can take a few hundred ms,
and a write that should be confirmed must not fail for it."""
SMALL = JobRequest.model_validate({"epochs": 1, "train_size": 1000})


@dataclass
class Pair:
    """A primary and its replica, each a redis-server on a loopback port."""

    root: Path
    primary_port: int
    replica_port: int
    primary: subprocess.Popen
    replica: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.primary_port}/0"

    def start_replica(self) -> None:
        assert self.replica is None, "the replica runs already"
        extra = ["--replicaof", "127.0.0.1", str(self.primary_port)]
        self.replica = start_redis(self.root / "replica", self.replica_port, extra=extra)
        with redis.Redis(port=self.primary_port) as primary:
            # connected and acknowledging: what WAIT counts
            wait_until(lambda: _acking(primary), 20, "the replica synced and acknowledging")

    def stop_replica(self) -> None:
        assert self.replica is not None
        stop(self.replica)
        self.replica = None


def _acking(primary: redis.Redis) -> bool:
    info = primary.info("replication")
    return info["connected_slaves"] == 1 and info["slave0"]["state"] == "online"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("replication")
    port = free_port()
    found = Pair(root, port, free_port(), start_redis(root / "primary", port))
    found.start_replica()
    try:
        yield found
    finally:
        if found.replica is not None:
            stop(found.replica)
        stop(found.primary)


@pytest.fixture
def without_replica(pair: Pair) -> Iterator[Pair]:
    """The replica stopped for the test, running again after it."""
    pair.stop_replica()
    try:
        yield pair
    finally:
        if pair.replica is None:
            pair.start_replica()


@pytest.fixture
def services(pair: Pair, tmp_path: Path) -> Iterator[Services]:
    """An API process's services over the primary, with REDIS_MIN_REPLICAS=1."""
    settings = Settings(
        redis_url=pair.url,
        key_prefix=KEYS.prefix,
        model_dir=tmp_path / "models",
        mnist_dir=mnist_dir(),
        mnist_download=False,
        redis_min_replicas=1,
        redis_wait_ms=WAIT_MS,
    )
    built = Services.connect(settings)
    built.redis.flushdb()
    yield built
    built.close()


def test_the_wait_rule(pair: Pair) -> None:
    client = connect(pair.url)
    rule = Replication(min_replicas=1, wait_ms=WAIT_MS)
    quick = Replication(min_replicas=1, wait_ms=200)  # where no replica can confirm
    client.set("kept", "1")
    confirm(client, rule, KEYS.replicated(), (("GET", "kept"), "1"))
    with redis.Redis(port=pair.replica_port, decode_responses=True) as replica:
        assert replica.get("kept") == "1"
    # a proof that does not hold: the write is not on this server (lost in a failover)
    with pytest.raises(NotReplicated, match="not on the primary"):
        confirm(client, rule, KEYS.replicated(), (("GET", "kept"), "2"))
    pair.stop_replica()
    try:
        client.set("alone", "1")
        started = time.monotonic()
        with pytest.raises(NotReplicated, match="0 of 1 replica"):
            confirm(client, quick, KEYS.replicated(), (("GET", "alone"), "1"))
        assert time.monotonic() - started >= 0.2  # it did wait
        confirm(client, Replication(0), KEYS.replicated(), (("GET", "alone"), "nothing asked"))
        patient = Replication(min_replicas=1, wait_ms=WAIT_MS, retries=8)
        # a worker's patience outlasts a replica's restart: started while it waits
        threading.Timer(0.3, pair.start_replica).start()
        confirm(client, patient, KEYS.replicated(), (("GET", "alone"), "1"))
    finally:
        wait_until(lambda: pair.replica is not None, 30, "the replica started again")
        client.close()


def test_a_submission_not_kept_twice_is_withdrawn_and_its_retry_makes_one_job(
    services: Services, without_replica: Pair
) -> None:
    with pytest.raises(NotReplicated):
        services.submit.submit(SMALL, idempotency_key="client-key")
    assert services.jobs.list_jobs(0, 10) == ([], 0)  # withdrawn: nothing to find or run
    assert services.jobs.queued_count() == 0 and services.queue.depth() == 0
    assert not services.redis.exists(KEYS.idempotency("client-key"))
    without_replica.start_replica()
    first = services.submit.submit(SMALL, idempotency_key="client-key")
    again = services.submit.submit(SMALL, idempotency_key="client-key")
    assert first.created and not again.created and again.job_id == first.job_id
    jobs, total = services.jobs.list_jobs(0, 10)
    assert total == 1 and jobs[0].id == first.job_id and services.queue.depth() == 1


def test_a_found_job_is_confirmed_again(services: Services, pair: Pair) -> None:
    first = services.submit.submit(SMALL, idempotency_key="retried")
    pair.stop_replica()
    try:
        with pytest.raises(NotReplicated):  # its first 202 is not the retry's
            services.submit.submit(SMALL, idempotency_key="retried")
        assert services.jobs.get(first.job_id) is not None  # not withdrawn: it was sent
    finally:
        pair.start_replica()


def test_an_alias_change_not_kept_twice_is_undone(services: Services, pair: Pair) -> None:
    aliases = services.models.aliases
    a, b = register(services.models, seed=1), register(services.models, seed=2)
    aliases.set_alias("production", a, reason="first")
    aliases.set_alias("production", b, reason="second")
    before = aliases.get_alias("production")
    pair.stop_replica()
    try:
        with pytest.raises(NotReplicated):
            aliases.set_alias("production", a, reason="not kept")
        assert aliases.get_alias("production") == before  # target and history as they were
        with pytest.raises(NotReplicated):
            aliases.rollback("production")
        assert aliases.get_alias("production") == before  # a retry rolls back once
        with pytest.raises(NotReplicated):
            aliases.set_alias("staging", a)
        assert aliases.get_alias("staging") is None
        candidate = services.registry.get_model(a)
        assert candidate is not None
        with pytest.raises(NotReplicated):  # the promotion gate: undone as well
            aliases.promote_if_better(candidate, PromoteOption(alias="gated"), 0.9)
        assert aliases.get_alias("gated") is None
        with pytest.raises(NotReplicated):  # a deletion is not undone: its retry finds it gone
            aliases.delete_alias("production")
        assert aliases.get_alias("production") is None
    finally:
        pair.start_replica()
    aliases.set_alias("production", b)
    assert aliases.set_alias("production", a).model_id == a
    assert aliases.rollback("production").model_id == b
    services.models.splits.start("production", CanaryRequest(model_id=a, percent=10))
    pair.stop_replica()
    try:  # a canary's promotion is not undone: the split it ended cannot come back
        with pytest.raises(NotReplicated):
            services.models.splits.promote("production")
        assert aliases.alias_targets()["production"] == a
        assert services.models.splits.get("production") is None
    finally:
        pair.start_replica()


def test_a_registration_or_a_correction_not_kept_twice_is_found_by_the_retry(
    services: Services, pair: Pair
) -> None:
    registry: ModelRegistry = services.registry
    model_id = register(services.models)
    info = registry.get_model(model_id)
    assert info is not None
    record = make_file(np.full(784, 200), 3, Source.pixels, predicted=5)
    pair.stop_replica()
    try:
        with pytest.raises(NotReplicated):
            registry.put_model(info)
        registry.put_model(info, confirmed=False)  # the rebuild's: the files are the truth
        with pytest.raises(NotReplicated):
            services.corrections.add(record)
    finally:
        pair.start_replica()
    again = services.corrections.add(record)
    assert not again.created and services.corrections.index.count() == 1


def test_readonly_is_retried_until_the_server_takes_writes(pair: Pair) -> None:
    """Behind one address (a managed Redis), a pooled connection may still reach a
    demoted primary: READONLY is retried with the backoff, the connection dropped, until
    a server takes the write. Forced: the replica is promoted once it has refused one."""
    replica = redis.Redis(port=pair.replica_port, decode_responses=True)
    replica.config_resetstat()  # no READONLY counted before this test's
    client = connect(f"redis://127.0.0.1:{pair.replica_port}/0", retries=6)

    def promote_after_a_refusal() -> None:
        wait_until(lambda: "errorstat_READONLY" in replica.info("errorstats"), 10, "a READONLY")
        replica.replicaof("NO", "ONE")

    promoter = threading.Thread(target=promote_after_a_refusal)
    promoter.start()
    try:
        assert client.set("after-promotion", "1")
        promoter.join()
        assert replica.get("after-promotion") == "1"
    finally:
        promoter.join()
        client.close()
        replica.replicaof("127.0.0.1", pair.primary_port)  # a replica again
        with redis.Redis(port=pair.primary_port) as primary:
            wait_until(lambda: _acking(primary), 20, "the replica back")
        replica.close()


def test_the_index_serves_its_last_snapshot_while_redis_is_away(tmp_path: Path) -> None:
    port = free_port()
    server = start_redis(tmp_path / "redis", port)
    url = f"redis://127.0.0.1:{port}/0"
    registry = ModelRegistry(connect(url), KEYS)
    model_id = uuid.uuid4()
    registry.redis.zadd(KEYS.models(), {str(model_id): 1.0})

    async def scenario() -> None:
        index = ModelIndex.from_url(url, KEYS, "production")
        never_read = ModelIndex.from_url(url, KEYS, "production")
        try:
            assert (await index.snapshot()).ids == {model_id}
            stop(server)
            assert (await index.snapshot()).ids == {model_id}  # the last one read
            assert (await index.resolve(model_id, None))[0] == model_id
            with pytest.raises(redis.RedisError):  # nothing read yet: nothing to serve
                await never_read.snapshot()
        finally:
            await index.aclose()
            await never_read.aclose()

    try:
        asyncio.run(scenario())
    finally:
        stop(server)
        registry.redis.close()


def test_history_rows_a_failover_lost_are_written_again(jobs: JobStore) -> None:
    """The new primary lacks the last rows (and the record's epoch written with them):
    the next row brings the trainer's earlier rows back, one per epoch."""
    job = Job(id=uuid.uuid4(), params=TrainParams(epochs=5), epochs=5)
    assert jobs.create(job, 10).created
    rows = [EpochRecord(epoch=n, cost=1.0 / n, seconds=0.1, eta=0.1) for n in range(1, 5)]
    for n in (1, 2, 3):
        jobs.record_epoch(job.id, rows[n - 1], earlier=rows[: n - 1])
    # what a primary promoted before it received epochs 2 and 3 holds
    jobs.redis.ltrim(jobs.keys.job_history(job.id), 0, 0)
    jobs.update(job.id, lambda stored: stored.model_copy(update={"epoch": 1}))
    jobs.record_epoch(job.id, rows[3], earlier=rows[:3])
    public = jobs.get_public(job.id)
    assert public is not None and public.epoch == 4
    assert public.history == rows


def test_a_worker_that_finds_another_redis_server_registers_what_it_lost(
    services: Services,
) -> None:
    """A failover (or a restart) may lose a registration; the registry is not empty, so
    only the change of server tells a worker to reconcile it with the model files."""
    kept, lost = register(services.models, seed=1), register(services.models, seed=2)
    services.redis.delete(KEYS.model(lost))  # what a primary promoted too early lacks
    services.redis.zrem(KEYS.models(), str(lost))
    watch = ServerWatch()
    recovery_pass(services, watch)  # the first look notes the server
    assert services.registry.get_model(lost) is None
    recovery_pass(services, watch)  # the same server: nothing to reconcile
    assert services.registry.get_model(lost) is None
    watch.seen = "the run_id of the server before the failover"
    recovery_pass(services, watch)
    assert {m.id for m in services.registry.list_models(0, 10)[0]} == {kept, lost}
