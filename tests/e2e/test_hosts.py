"""Several hosts, for real (issue 19): network namespaces on a bridge as the hosts
`redis`, `s3`, `api-a`, `api-b`, `worker-1` and `worker-2`, each process with its own
folders; the artifact store is SeaweedFS on `s3`. The scenarios share one cluster and
run in order: a job served by both API hosts, a worker host lost (`kill -9`), a worker
host partitioned past its lease and healed, the store host down while a job trains
and while an API host misses its cache, then a sweep over both worker hosts and a
correction that crosses all of them."""

import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import httpx
import numpy as np
import pytest

from shared.data import mnist as mnist_files
from tests.jobs import FINISHED
from tests.netns import Host, Network, require_netns
from tests.procs import BIN, REPO, mnist_dir, wait_until
from tests.seaweed import ACCESS_KEY, SECRET_KEY, Seaweed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

JOB = {
    "train_size": 3000,
    "minibatches": 30,
    "n_hidden": 30,
    "eta": 0.05,
    "input_scaling": "unit",
}
WORKER_FLAGS = ("--concurrency", "1", "--loglevel", "INFO", "--hostname")
REDIS_PORT = 6379
API_PORT = 8000


@dataclass
class Cluster:
    net: Network
    hosts: dict[str, Host]
    s3: Seaweed
    bucket: str
    env: dict[str, str]
    apis: dict[str, str] = field(default_factory=dict)  # host name -> base URL

    def environment(self, host: Host) -> dict[str, str]:
        """The settings of a process on ``host``: shared Redis and bucket, its own folders."""
        return {
            **self.env,
            "MODEL_DIR": str(host.dir / "models"),
            "CACHE_DIR": str(host.dir / "cache"),
            "MNIST_DIR": str(host.dir / "mnist"),
        }

    def start_api(self, name: str) -> None:
        host = self.hosts[name]
        host.popen(
            [str(BIN / "uvicorn"), "api.main:app", "--app-dir", str(REPO), *self._bind(host)],
            env=self.environment(host),
            log=host.dir / "api.log",
        )
        url = f"http://{host.address}:{API_PORT}"
        wait_until(lambda: _answers(url), 30, f"{name}'s API")
        self.apis[name] = url

    @staticmethod
    def _bind(host: Host) -> list[str]:
        return ["--host", host.address, "--port", str(API_PORT)]

    def start_worker(self, name: str) -> None:
        host = self.hosts[name]
        seen = len(self.log(name))
        host.popen(
            [str(BIN / "celery"), "-A", "worker.app", "worker", *WORKER_FLAGS, f"{name}@%h"],
            env=self.environment(host),
            log=host.dir / "worker.log",
        )
        wait_until(lambda: "ready." in self.log(name)[seen:], 60, f"{name}'s worker ready")

    def log(self, name: str) -> str:
        path = self.hosts[name].dir / ("worker.log" if name.startswith("worker") else "api.log")
        return path.read_text(errors="replace") if path.exists() else ""

    def http(self, api: str) -> httpx.Client:
        return httpx.Client(base_url=self.apis[api], timeout=60)

    def submit(self, api: str, **params: object) -> str:
        with self.http(api) as http:
            answer = http.post("/jobs", json={**JOB, **params})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def job(self, job_id: str, api: str = "api-a") -> dict:
        with self.http(api) as http:
            return http.get(f"/jobs/{job_id}").json()

    def wait(self, job_id: str, done: set[str] = FINISHED, timeout: float = 180) -> dict:
        return wait_until(
            lambda: (job := self.job(job_id))["status"] in done and job, timeout, f"job {job_id}"
        )

    def wait_epoch(self, job_id: str, epoch: int, timeout: float = 120) -> dict:
        return wait_until(
            lambda: (job := self.job(job_id))["epoch"] >= epoch and job, timeout, "epochs"
        )

    def objects(self) -> list[str]:
        listed = self.s3.client().list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def stop_worker(self, name: str) -> None:
        """The worker host's processes gone (a paused worker would still take messages:
        Redis hands a blocked BRPOP its item whatever the process is doing)."""
        self.hosts[name].kill_all(signal.SIGKILL)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/livez", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_netns()
    root = tmp_path_factory.mktemp("hosts")
    with Network(root) as net:
        hosts = {
            name: net.host(name)
            for name in ("redis", "s3", "api-a", "api-b", "worker-1", "worker-2")
        }
        redis_host = hosts["redis"]
        redis_host.popen(
            [
                *("redis-server", "--bind", redis_host.address, "--port", str(REDIS_PORT)),
                *("--protected-mode", "no", "--save", "", "--appendonly", "no"),
                *("--dir", str(redis_host.dir)),
            ],
            log=redis_host.dir / "redis.log",
        )
        s3 = Seaweed(hosts["s3"].dir / "weed", place=hosts["s3"])
        s3.start()
        bucket = s3.create_bucket("mnist-hosts")
        env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "MNIST_DIR")}
        env.update(
            REDIS_URL=f"redis://{redis_host.address}:{REDIS_PORT}/0",
            ARTIFACT_URI=f"s3://{bucket}/service",
            S3_ENDPOINT_URL=s3.endpoint_url,
            S3_REGION="us-east-1",
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_EC2_METADATA_DISABLED="true",
            MNIST_DOWNLOAD="false",
            PYTHONPATH=str(REPO),
            PYTHONUNBUFFERED="1",
            LOG_FORMAT="text",
            LEASE_SECONDS="3",
            HEARTBEAT_SECONDS="0.5",
            RECOVERY_INTERVAL_SECONDS="1",
            CHECKPOINT_SECONDS="0",
            STORE_RETRY_SECONDS="90",
        )
        cluster = Cluster(net, hosts, s3, bucket, env)
        for name in ("worker-1", "worker-2"):  # each worker keeps its own verified MNIST
            shutil.copytree(mnist_dir(), hosts[name].dir / "mnist")
        for name in ("api-a", "api-b"):
            cluster.start_api(name)
        for name in ("worker-1", "worker-2"):
            cluster.start_worker(name)
        net.assert_private_folders()
        try:
            yield cluster
        finally:
            net.assert_private_folders()
            s3.stop()


@lru_cache(maxsize=1)
def _test_images() -> np.ndarray:
    return mnist_files.load(mnist_dir()).test_images


def _pixels(index: int) -> list[int]:
    return np.asarray(_test_images()[index]).tolist()


def test_a_job_on_one_worker_host_serves_on_both_api_hosts(cluster: Cluster) -> None:
    first = cluster.submit("api-a", epochs=5)
    second = cluster.submit("api-b", epochs=5)
    for job_id in (first, second):
        assert cluster.wait(job_id)["status"] == "succeeded"
    with cluster.http("api-a") as a, cluster.http("api-b") as b:
        for job_id in (first, second):
            body = {"pixels": _pixels(0), "model_id": job_id}
            from_a, from_b = a.post("/predict", json=body), b.post("/predict", json=body)
            assert from_a.status_code == from_b.status_code == 200
            assert from_a.json()["probabilities"] == from_b.json()["probabilities"]
        # the newest model serves by default until one is promoted; promote the other one
        # through api-b: api-a serves it on its very next request
        newest = a.get("/models").json()["items"][0]["id"]
        assert a.post("/predict", json={"pixels": _pixels(0)}).json()["model_id"] == newest
        older = first if newest == second else second
        assert b.put("/aliases/production", json={"model_id": older}).status_code == 200
        served = a.post("/predict", json={"pixels": _pixels(0)}).json()
        assert served["model_id"] == older and served["alias"] == "production"


def test_a_worker_host_killed_mid_training_resumes_on_the_other(cluster: Cluster) -> None:
    cluster.stop_worker("worker-2")  # the job can only start on worker-1
    job_id = cluster.submit("api-a", epochs=30)
    try:
        cluster.wait_epoch(job_id, 3)
    finally:
        cluster.hosts["worker-1"].kill_all(signal.SIGKILL)  # the host is lost
        cluster.start_worker("worker-2")
    done = cluster.wait(job_id)
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert [row["epoch"] for row in done["history"]] == list(range(1, 31))
    assert f"job {job_id}: resuming from checkpoint at epoch" in cluster.log("worker-2")
    assert f"service/{job_id}.npz" in cluster.objects()
    cluster.start_worker("worker-1")  # a new machine in its place


def test_a_partitioned_worker_host_writes_nothing_when_it_comes_back(cluster: Cluster) -> None:
    cluster.stop_worker("worker-2")
    job_id = cluster.submit("api-a", epochs=30)
    worker_1 = cluster.hosts["worker-1"]
    try:
        cluster.wait_epoch(job_id, 3)
        worker_1.partition()  # its link down: it can reach neither Redis nor the store
    finally:
        cluster.start_worker("worker-2")
    try:
        done = cluster.wait(job_id)  # resumed on worker-2 once worker-1's lease ran out
    finally:
        worker_1.heal()
    assert done["status"] == "succeeded" and done["attempts"] == 2
    wait_until(
        lambda: (
            f"job {job_id}: another worker holds it now" in cluster.log("worker-1")
            or f"job {job_id}: lease lost to another worker" in cluster.log("worker-1")
        ),
        90,
        "worker-1 to find it lost the job",
    )
    after = cluster.job(job_id)
    assert after == done  # not a row, not a field changed after worker-2's end
    assert [row["epoch"] for row in after["history"]] == list(range(1, 31))
    with cluster.http("api-b") as http:
        models = [m["id"] for m in http.get("/models", params={"limit": 100}).json()["items"]]
    assert models.count(job_id) == 1
    objects = cluster.objects()
    assert not [key for key in objects if key.startswith("service/checkpoints/")], objects
    assert [k for k in objects if job_id in k] == [
        f"service/{job_id}.npz",
        f"service/{job_id}.sha256",
    ]


def test_the_store_host_down_for_fifteen_seconds_costs_nothing(cluster: Cluster) -> None:
    with cluster.http("api-a") as http:
        unseen = next(m["id"] for m in http.get("/models").json()["items"])  # not on api-b
    job_id = cluster.submit("api-a", epochs=40)
    cluster.wait_epoch(job_id, 2)
    store = cluster.hosts["s3"]
    store.partition()
    began = time.monotonic()
    try:
        with cluster.http("api-b") as http:
            miss = http.post("/predict", json={"pixels": _pixels(1), "model_id": unseen})
            ready = http.get("/readyz").json()
        assert miss.status_code == 503 and miss.headers["Retry-After"]
        assert miss.json()["detail"] == "the model store is unavailable; try again shortly"
        assert ready["store"] == "unavailable" and ready["status"] == "degraded"
        time.sleep(max(0.0, 15 - (time.monotonic() - began)))
    finally:
        store.heal()
    done = cluster.wait(job_id)
    assert done["status"] == "succeeded"
    assert [row["epoch"] for row in done["history"]] == list(range(1, 41))
    with cluster.http("api-b") as http:
        served = http.post("/predict", json={"pixels": _pixels(1), "model_id": unseen})
        assert served.status_code == 200
        assert http.get("/readyz").json()["store"] == "ok"
    assert f"service/{job_id}.npz" in cluster.objects()


def test_a_sweep_and_a_correction_cross_every_host(cluster: Cluster) -> None:
    sweep = {
        "base": {
            **{k: v for k, v in JOB.items() if k != "eta"},
            "epochs": 4,
            "validation_fraction": 0.2,
        },
        "space": {"eta": {"low": 0.02, "high": 0.2, "log": True}},
        "trials": 4,
        "parallel": 2,
        "seed": 5,
    }
    with cluster.http("api-a") as http:
        started = http.post("/sweeps", json=sweep)
        assert started.status_code == 202, started.text
        sweep_id = started.json()["id"]
        done = wait_until(
            lambda: (s := http.get(f"/sweeps/{sweep_id}").json())["status"] in FINISHED and s,
            240,
            "the sweep",
        )
    assert done["status"] == "succeeded" and len(done["trials"]) == 4
    trained_on = {
        name
        for name in ("worker-1", "worker-2")
        for trial in done["trials"]
        if f"job {trial['job_id']}: attempt" in cluster.log(name)
    }
    assert trained_on == {"worker-1", "worker-2"}

    parent = done["best"]["model_id"]
    with cluster.http("api-a") as http:
        correction = http.post("/feedback", json={"pixels": _pixels(2), "label": 1})
    assert correction.status_code == 201
    cluster.stop_worker("worker-1")
    tune = cluster.submit("api-a", init_model=parent, feedback_weight=5, epochs=3)
    tuned = cluster.wait(tune)
    assert tuned["status"] == "succeeded"
    assert f"job {tune}: attempt" in cluster.log("worker-2")
    with cluster.http("api-b") as http:
        frozen = http.get(f"/jobs/{tune}/feedback").json()
        assert correction.json()["id"] in frozen
        served = http.post("/predict", json={"pixels": _pixels(2), "model_id": tune})
        assert served.status_code == 200
        card = http.get(f"/models/{tune}").json()
    assert card["parent_model_id"] == parent and card["feedback_count"] >= 1
