"""Redis without a single point of failure (issue 20), with real processes: a primary, a
replica and three sentinels (tests/sentinel.py; both passwords set, each where it
belongs), two Celery workers and two API processes told only ``REDIS_SENTINELS`` (their
``REDIS_URL`` names a port nobody listens on: it gives the password and database, and
its host must lose), with ``REDIS_MIN_REPLICAS=1``, and predictions of a cached model
flowing to both API processes the whole time.

One stack for the module, its story in the issue's steps, in this order:

- step 3: the replica stopped, a submission is a 503 with ``Retry-After``; the replica
  back, the client's retry with its Idempotency-Key makes one job;
- steps 1 and 3: ``kill -9`` of the primary while that job trains and a sweep runs, a
  second job's 202 just before: Sentinel promotes the replica, the killed server comes
  back as a replica, the jobs finish with one history row per epoch, the sweep with
  exactly its trials; no prediction failed;
- step 2: an alias change after the failover is followed by both API processes on
  their next request, both subscribed to the new primary;
- step 4: a second failover after the primary held writes alone (the replica stopped;
  a 503'd submission and alias change, and records written to it directly): when it
  comes back as a replica, none of it reappears.
"""

import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from shared.config import Settings
from shared.data.mnist import Mnist
from shared.redisdb.client import RedisTarget, connect
from shared.redisdb.keys import Keys
from shared.schemas.jobs import Job
from shared.schemas.models import AliasSummary
from shared.schemas.params import TrainParams
from tests.procs import free_port, service_env, start_api, start_worker, stop, wait_until
from tests.sentinel import Server, Topology

pytestmark = pytest.mark.e2e

DATA_PASSWORD = "data-secret"
SENTINEL_PASSWORD = "sentinel-secret"
KEYS = Keys()
SETTINGS = {
    "REDIS_MIN_REPLICAS": "1",
    "REDIS_WAIT_MS": "500",
    "LEASE_SECONDS": "5",
    "HEARTBEAT_SECONDS": "0.5",
    "RECOVERY_INTERVAL_SECONDS": "1",
    "CHECKPOINT_SECONDS": "0",
    "BLAS_THREADS": "1",  # two workers on two shared cores
}
QUICK = {"epochs": 2, "train_size": 2000, "minibatches": 20, "input_scaling": "unit"}
LONG_EPOCHS = 100
LONG = {**QUICK, "epochs": LONG_EPOCHS, "seed": 5}
TRIALS = 3
SWEEP = {
    "base": {"epochs": 4, "train_size": 2000, "minibatches": 20, "input_scaling": "unit"},
    "space": {"eta": {"low": 0.01, "high": 0.1, "log": True}},
    "trials": TRIALS,
    "parallel": 1,
    "sampler": "random",
    "pruner": "none",
    "seed": 20,
}
ENDED = {"succeeded", "failed", "cancelled"}


@dataclass
class Predictions:
    """``POST /predict`` to both API processes in turn, from a thread, all along."""

    apis: list[httpx.Client]
    body: dict[str, Any]
    answers: list[tuple[float, int | str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "Predictions":
        self._thread = threading.Thread(target=self._run, name="predictions", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            http = self.apis[n % len(self.apis)]
            n += 1
            try:
                outcome: int | str = http.post("/predict", json=self.body).status_code
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            self.answers.append((time.monotonic(), outcome))
            time.sleep(0.02)

    def since(self, start: float, end: float | None = None) -> tuple[int, list]:
        """Predictions answered in the window, and those that were not a 200."""
        window = [a for a in list(self.answers) if a[0] >= start and (end is None or a[0] <= end)]
        return len(window), [a for a in window if a[1] != 200]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=35)


@dataclass
class Stack:
    root: Path
    top: Topology
    env: dict[str, str]
    apis: list[httpx.Client]
    target: RedisTarget
    procs: list[subprocess.Popen] = field(default_factory=list)
    predictions: Predictions | None = None
    model_a: str = ""
    long_job: str = ""

    @property
    def http(self) -> httpx.Client:
        return self.apis[0]

    def job(self, job_id: str) -> dict:
        response = self.http.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: str, timeout: float = 120) -> dict:
        return wait_until(
            lambda: (job := self.job(job_id))["status"] in ENDED and job,
            timeout,
            f"job {job_id} to end",
            interval=0.2,
        )

    def submit(
        self, body: dict, key: str | None = None, http: httpx.Client | None = None
    ) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return (http or self.http).post("/jobs", json=body, headers=headers)

    def primary_client(self) -> redis.Redis:
        """A plain client of the server the sentinels name as primary now."""
        return self.top.primary().client()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mnist_data: Mnist) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("failover")
    top = Topology(
        root / "redis",
        password=DATA_PASSWORD,
        sentinel_password=SENTINEL_PASSWORD,
        persistent=True,  # a killed server comes back with what it held
    )
    top.start()
    sentinels = ",".join(top.sentinel_addresses())
    # REDIS_URL's host and port lead nowhere: only the sentinels may say where Redis is
    url = f"redis://:{DATA_PASSWORD}@127.0.0.1:1/0"
    env = service_env(
        url,
        root / "models",
        REDIS_SENTINELS=sentinels,
        REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
        **SETTINGS,
    )
    settings = Settings(
        redis_url=url, redis_sentinels=sentinels, redis_sentinel_password=SENTINEL_PASSWORD
    )
    built = Stack(root, top, env, [], RedisTarget.of(settings))
    try:
        for n in (1, 2):
            port = free_port()
            built.procs.append(start_api(env, root / f"api{n}.log", port))
            built.apis.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
        for n in (1, 2):
            log = root / f"worker{n}.log"
            built.procs.append(
                start_worker(env, log, "--concurrency", "1", "--hostname", f"w{n}@%h")
            )
        for n in (1, 2):
            log = root / f"worker{n}.log"
            wait_until(lambda log=log: "ready." in log.read_text(), 60, f"worker {n} ready")
        accepted = built.submit(QUICK)
        assert accepted.status_code == 202, accepted.text
        model = built.wait(accepted.json()["id"])
        assert model["status"] == "succeeded", model
        built.model_a = model["model_id"]
        put = built.http.put("/aliases/production", json={"model_id": built.model_a})
        assert put.status_code == 200, put.text
        pixels = np.asarray(mnist_data.test_images[0]).tolist()
        for http in built.apis:  # loaded into both processes' caches
            assert http.post("/predict", json={"pixels": pixels}).status_code == 200
        built.predictions = Predictions(built.apis, {"pixels": pixels}).start()
        yield built
    finally:
        if built.predictions is not None:
            built.predictions.stop()
        for proc in reversed(built.procs):
            stop(proc)
        for http in built.apis:
            http.close()
        top.stop()


class FirstWrite:
    """Writes through the service's own client (Sentinel, retries) from a thread, and
    notes when the first one succeeded after ``since`` (set once the killed primary is
    reaped: any write acknowledged after that is the new primary's)."""

    def __init__(self, target: RedisTarget) -> None:
        self.client = connect(target)
        self.since = 0.0
        self.first: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="first-write", daemon=True)

    def __enter__(self) -> "FirstWrite":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.set("failover-probe", str(time.monotonic()))
                done = time.monotonic()
                if self.since and done > self.since and self.first is None:
                    self.first = done
            except redis.RedisError:
                pass
            time.sleep(0.02)

    def first_after(self) -> float:
        return float(wait_until(lambda: self.first, 60, "a write to succeed after the kill"))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=35)
        self.client.close()


def _history_epochs(job: dict) -> list[int]:
    return [row["epoch"] for row in job["history"]]


def test_without_a_replica_a_submission_is_refused_and_the_retry_makes_one_job(
    stack: Stack,
) -> None:
    """Step 3, first half."""
    before = stack.http.get("/jobs").json()["total"]
    stack.top.stop_replica()
    try:
        refused = stack.submit(LONG, key="long-job")
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] and "id" not in refused.json()
        assert stack.http.get("/jobs").json()["total"] == before  # withdrawn, not queued
    finally:
        stack.top.start_replica()
    accepted = stack.submit(LONG, key="long-job", http=stack.apis[1])
    assert accepted.status_code == 202, accepted.text
    again = stack.submit(LONG, key="long-job")
    assert again.status_code == 202 and again.json()["id"] == accepted.json()["id"]
    assert stack.http.get("/jobs").json()["total"] == before + 1
    stack.long_job = accepted.json()["id"]


def test_kill_the_primary_while_a_job_trains_and_a_sweep_runs(
    stack: Stack, record_property: Any
) -> None:
    """Steps 1 and 3 (second half): kill -9 right after a 202."""
    assert stack.long_job, "runs after the test that submits the long job"
    started = stack.http.post("/sweeps", json=SWEEP)
    assert started.status_code == 202, started.text
    sweep_id = started.json()["id"]

    def training() -> bool:
        job = stack.job(stack.long_job)
        assert job["status"] not in ENDED, job
        trials = [j for j in stack.http.get("/jobs").json()["items"] if j["sweep_id"] == sweep_id]
        return job["epoch"] >= 2 and any(t["status"] == "running" for t in trials)

    wait_until(training, 60, "the long job and a trial training", interval=0.1)
    with FirstWrite(stack.target) as probe:
        just = stack.submit(QUICK, key="just-before-the-kill")
        assert just.status_code == 202, just.text  # kept twice: on the replica too
        old = stack.top.primary()
        before = stack.job(stack.long_job)
        killed = time.monotonic()
        old.stop(signal.SIGKILL)
        probe.since = time.monotonic()
        stack.top.wait_failover(old)
        promoted = time.monotonic() - killed
        seconds = probe.first_after() - killed
    assert before["status"] == "running" and before["epoch"] < LONG_EPOCHS  # mid-training
    stack.top.wait_ready()  # settled on the new primary before the old one returns
    stack.top.rejoin(old)  # back from its AOF as a master, demoted by Sentinel, resynced
    assert old.replication()["role"] == "slave"

    long_job = stack.wait(stack.long_job)
    assert long_job["status"] == "succeeded", long_job
    assert _history_epochs(long_job) == list(range(1, LONG_EPOCHS + 1))
    fresh = stack.wait(just.json()["id"])
    assert fresh["status"] == "succeeded", fresh  # it was on the new primary, and ran
    sweep = wait_until(
        lambda: (s := stack.http.get(f"/sweeps/{sweep_id}").json())["settled"] and s,
        120,
        "the sweep to settle",
        interval=0.2,
    )
    assert sweep["status"] == "succeeded", sweep
    numbers = sorted(t["number"] for t in sweep["trials"])
    assert numbers == list(range(TRIALS)), sweep["trials"]
    assert len({t["job_id"] for t in sweep["trials"]}) == TRIALS
    assert all(t["state"] == "complete" for t in sweep["trials"]), sweep["trials"]

    assert stack.predictions is not None
    answered, failed = stack.predictions.since(killed)
    assert answered > 0 and failed == [], failed[:5]  # a cached model needs no Redis
    record_property("promoted_seconds", round(promoted, 2))
    record_property("first_write_seconds", round(seconds, 2))
    record_property("predictions_during", answered)
    print(
        f"\nkill -9 -> promoted {promoted:.1f} s, first write {seconds:.1f} s; "
        f"{answered} predictions since, {len(failed)} failed"
    )


def test_an_alias_change_after_the_failover_is_followed_by_both_api_processes(
    stack: Stack, mnist_data: Mnist
) -> None:
    """Step 2."""
    with stack.primary_client() as primary:  # both followers re-subscribed to it
        wait_until(
            lambda: primary.pubsub_numsub(KEYS.announcements())[0][1] == 2,
            30,
            "both API processes subscribed on the new primary",
        )
    long_model = stack.job(stack.long_job)["model_id"]
    pixels = np.asarray(mnist_data.test_images[1]).tolist()
    for target in (long_model, stack.model_a, long_model, stack.model_a):
        put = stack.apis[1].put("/aliases/production", json={"model_id": target})
        assert put.status_code == 200, put.text
        for http in stack.apis:  # the very next request, in either process
            answer = http.post("/predict", json={"pixels": pixels})
            assert answer.status_code == 200, answer.text
            assert (answer.json()["model_id"], answer.json()["alias"]) == (target, "production")


def test_a_returning_primary_brings_back_nothing_it_held_alone(stack: Stack) -> None:
    """Step 4: the primary takes writes while its replica is away, then dies; the
    replica, back, is promoted without them; the old primary returns as a replica."""
    top = stack.top
    jobs_before = stack.http.get("/jobs").json()["total"]
    replica = top.stop_replica()
    fake = Job(id=uuid.uuid4(), params=TrainParams(epochs=1), epochs=1)
    alias = AliasSummary(
        name="held-alone", model_id=uuid.UUID(stack.model_a), updated_at=fake.created_at
    )
    old = top.primary()
    # acknowledged writes are refused, and undone: nothing of them stays even here
    refused = stack.submit(QUICK, key="held-alone")
    assert refused.status_code == 503, refused.text
    put = stack.http.put("/aliases/refused", json={"model_id": stack.model_a})
    assert put.status_code == 503, put.text
    # what the primary holds alone: records written to it as any unconfirmed write is
    with old.client() as primary:
        primary.set(KEYS.job(fake.id), fake.model_dump_json())
        primary.zadd(KEYS.jobs(), {str(fake.id): fake.created_at.timestamp()})
        primary.hset(KEYS.aliases(), alias.name, alias.model_dump_json())
    wait_until(  # the followers read it: it is current state on the old primary
        lambda: all(
            http.post("/predict", json={"pixels": [0] * 784, "alias": "held-alone"}).status_code
            == 200
            for http in stack.apis
        ),
        10,
        "both API processes serving the alias held alone",
    )

    killed = time.monotonic()
    old.stop(signal.SIGKILL)
    top.stopped.remove(replica)
    replica.start()  # from its own data: without what the primary held alone
    top.wait_failover(old)
    top.wait_ready()
    top.rejoin(old)  # back from its AOF, with those records, and demoted
    for server in (old, replica):
        assert _holds_none(server, fake, alias.name), server.name
    for http in stack.apis:
        assert http.get(f"/jobs/{fake.id}").status_code == 404
        assert str(fake.id) not in [j["id"] for j in http.get("/jobs").json()["items"]]
        assert http.get("/aliases/held-alone").status_code == 404
        assert http.get("/aliases/refused").status_code == 404
        gone = http.post("/predict", json={"pixels": [0] * 784, "alias": "held-alone"})
        assert gone.status_code == 404, gone.text
    assert stack.http.get("/jobs").json()["total"] == jobs_before  # the 503 left nothing
    assert stack.predictions is not None
    answered, failed = stack.predictions.since(killed)
    assert answered > 0 and failed == [], failed[:5]


def _holds_none(server: Server, fake: Job, alias: str) -> bool:
    with server.client() as client:
        return not client.exists(KEYS.job(fake.id)) and not client.hexists(KEYS.aliases(), alias)
