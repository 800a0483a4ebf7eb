"""``docker compose up`` for real: the stack users run is the stack CI runs (issue 6).

The real ``docker-compose.yml`` (less the API's published port, meaningless with host
networking) plus a test override (host networking on every service, free loopback
ports for Redis and the API, a temporary models folder behind the ``models`` volume,
MNIST from ``MNIST_DIR`` mounted read-only, no download), built and started with
``up -d --build``. Through 127.0.0.1 only: train, predict a real MNIST
test image, restart the worker mid-job and see the job finish, ``down``, find the
model files in the volume, ``up`` again and predict with them. Starts its own dockerd
when no engine answers (see tests/compose/engine.py); skips without Docker, fails
under CI=true.
"""

import gzip
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import numpy as np
import pytest
import redis
import yaml

from tests.compose.engine import (
    REPO,
    Compose,
    Engine,
    compose_command,
    docker,
    docker_engine,
    ensure_base_images,
    extra_ca_certificates,
    inspect,
    unavailable,
)
from tests.jobs import FINISHED, JobCalls
from tests.procs import free_port, mnist_dir

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1200)]

# About 2 s on 2 cores and ~91% test accuracy whatever the BLAS threads (the book's
# defaults learn too slowly for a 5,000-image run to classify reliably; eta 0.1 overshot
# in its first epochs and ended at 73-78%, depending on the threads).
QUICK_JOB = {
    "epochs": 10,
    "train_size": 5000,
    "minibatches": 50,
    "eta": 0.02,
    "input_scaling": "unit",
}
LONG_JOB = {"epochs": 300, "train_size": 10000}
APP_UID = "10001"  # the Dockerfile's service user


def free_ports_and_the_next(count: int) -> list[int]:
    """``count`` loopback ports each free together with the port after it (SeaweedFS's
    gRPC ports at S3_GRPC_OFFSET=1), all held open until picked: a port the OS picks
    freely may have its next one in use (CI saw the master fail on it)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(50 * count):
            port, next_one = socket.socket(), socket.socket()
            held += [port, next_one]
            port.bind(("127.0.0.1", 0))
            try:
                next_one.bind(("127.0.0.1", port.getsockname()[1] + 1))
            except OSError:
                continue
            ports.append(port.getsockname()[1])
            if len(ports) == count:
                return ports
    finally:
        for sock in held:
            sock.close()
    raise RuntimeError(f"no {count} free ports with their next one free")


def read_test_images(directory: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` MNIST test images (0..255, 784 each) and labels, from the IDX .gz."""
    with gzip.open(directory / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(directory / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return images[:n], labels[:n]


@dataclass
class Stack(JobCalls):
    compose: Compose
    engine: Engine
    http: httpx.Client
    models_dir: Path
    redis_port: int
    redis_password: str

    def diagnostics(self) -> str:
        logs = self.compose.run("logs", "--no-color", "--tail", "60", timeout=60, check=False)
        return f"{self.compose.log_tail(2000)}\n--- service logs ---\n{logs[-6000:]}"

    def wait_ready(self, timeout: float = 180) -> None:
        """GET /readyz on 127.0.0.1 until 200; bounded in time and tries."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout * 2)):
            try:
                if self.http.get("/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        raise TimeoutError(f"/readyz not 200 within {timeout}s\n{self.diagnostics()}")

    def wait(self, job_id: str, done: Callable[[dict], bool], what: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        job: dict = {}
        for _ in range(int(timeout * 10)):
            try:
                job = self.job(job_id)
            except httpx.HTTPError:  # the API is restarting or busy: try again
                job = job or {"status": "unknown"}
            else:
                if done(job):
                    return job
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id}: no {what} in {timeout}s: {job}\n{self.diagnostics()}")

    def wait_finished(self, job_id: str, timeout: float = 300) -> dict:
        return self.wait(job_id, lambda j: j["status"] in FINISHED, "end", timeout)

    def wait_health(self, service: str, timeout: float = 90) -> str:
        """Docker's own healthcheck verdict of the service's container."""
        (container,) = self.compose.container_ids(service)
        deadline = time.monotonic() + timeout
        status = "?"
        for _ in range(int(timeout)):
            status = inspect(self.engine, container)["State"]["Health"]["Status"]
            if status == "healthy" or time.monotonic() > deadline:
                break
            time.sleep(1)
        return status


def write_override(
    path: Path,
    redis_command: list[str],
    redis_port: int,
    api_port: int,
    redis_password: str,
    models_dir: Path,
    mnist: Path,
) -> None:
    """Host networking on loopback with free ports; models in a host folder; MNIST read-only."""
    redis_url = f"redis://:{redis_password}@127.0.0.1:{redis_port}/0"
    app_env = {"REDIS_URL": redis_url, "MNIST_DOWNLOAD": "false"}
    build = {"network": "host"}  # the engine has no bridge
    readyz = f"http://127.0.0.1:{api_port}/readyz"
    override = {
        "services": {
            "redis": {
                "network_mode": "host",
                # The real file's flags (AOF, password, ...), then the test's port and
                # address: redis-server applies its arguments in order.
                "command": [*redis_command, "--port", str(redis_port), "--bind", "127.0.0.1"],
                "environment": {"REDIS_PORT": str(redis_port)},  # for the healthcheck
            },
            "api": {
                "network_mode": "host",
                "build": build,
                "command": [
                    *("uvicorn", "api.main:app", "--host", "127.0.0.1"),
                    *("--port", str(api_port)),
                ],
                "environment": app_env,
                "healthcheck": {
                    "test": [
                        "CMD",
                        "python",
                        "-c",
                        f"import urllib.request; urllib.request.urlopen({readyz!r}, timeout=4)",
                    ]
                },
            },
            "worker": {
                "network_mode": "host",
                "build": build,
                "environment": app_env,
                "volumes": [f"{mnist}:/data/mnist:ro"],
            },
        },
        "volumes": {
            "models": {
                "driver": "local",
                "driver_opts": {"type": "none", "o": "bind", "device": str(models_dir)},
            }
        },
        # Compose makes a project network (a bridge in the machine's namespace) even
        # when no service joins it; a bridge appearing aborts the browser tests'
        # requests (tests/conftest.py). The engine's own "host" network stands in.
        "networks": {"default": {"external": True, "name": "host"}},
    }
    path.write_text(json.dumps(override, indent=2))  # JSON is YAML


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with docker_engine() as engine:
        yield engine


@pytest.fixture(scope="module")
def stack(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    command = compose_command()
    if command is None:
        unavailable("neither docker-compose nor the docker compose plugin is installed")
    mnist = mnist_dir().resolve()
    if not (mnist / "t10k-images-idx3-ubyte.gz").exists():
        unavailable(f"real MNIST not found in {mnist} (set MNIST_DIR)")
    root = tmp_path_factory.mktemp("compose")
    log = root / "compose.log"
    started = time.monotonic()
    ensure_base_images(engine, log)
    base_images_seconds = time.monotonic() - started

    models_dir = root / "models"
    models_dir.mkdir()
    try:  # the service user writes the models
        os.chown(models_dir, int(APP_UID), int(APP_UID))
    except PermissionError:
        models_dir.chmod(0o777)
    redis_port, api_port = free_port(), free_port()
    for _ in range(10):
        if api_port != redis_port:
            break
        api_port = free_port()
    password = secrets.token_hex(16)
    env_file = root / "compose.env"
    env_file.write_text(
        f"REDIS_PASSWORD={password}\nAPI_BIND=127.0.0.1\nAPI_PORT={api_port}\n"
        "MNIST_DOWNLOAD=false\nLOG_LEVEL=INFO\n"
    )
    project = f"mnist-compose-test-{secrets.token_hex(4)}"
    # Docker refuses published ports on host networking, and compose v1 cannot drop a
    # list in an override: the test runs a copy of docker-compose.yml less api.ports.
    real = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    del real["services"]["api"]["ports"]
    main = root / "docker-compose.yml"
    main.write_text(yaml.safe_dump(real, sort_keys=False))
    main_only = Compose(command, project, [main], env_file, engine.env, log)
    redis_command = yaml.safe_load(main_only.run("config", timeout=60))["services"]["redis"][
        "command"
    ]
    override = root / "compose.test.yml"
    write_override(override, redis_command, redis_port, api_port, password, models_dir, mnist)
    compose = Compose(command, project, [main, override], env_file, engine.env, log)
    http = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30, trust_env=False)
    stack = Stack(compose, engine, http, models_dir, redis_port, password)
    try:
        with extra_ca_certificates():
            started = time.monotonic()
            compose.run("up", "-d", "--build", timeout=900)
            build_seconds = time.monotonic() - started
        stack.wait_ready()
        print(
            f"\ncompose test: base images {base_images_seconds:.0f}s, "
            f"up --build {build_seconds:.0f}s, ready after {time.monotonic() - started:.0f}s"
        )
        yield stack
    finally:
        try:  # the services' logs go to compose.log (kept by pytest) before they go
            compose.run("logs", "--no-color", "--timestamps", timeout=60, check=False)
            compose.run("down", "-v", "--remove-orphans", "-t", "5", timeout=180, check=False)
        finally:
            http.close()
            print("compose test timings:", compose.history)


@pytest.fixture(scope="module")
def quick_model(stack: Stack) -> dict:
    """A short training job on real MNIST, run to the end."""
    job_id = stack.submit(**QUICK_JOB)
    return stack.wait_finished(job_id, timeout=240)


def test_trains_and_predicts_a_real_mnist_image(stack: Stack, quick_model: dict) -> None:
    job = quick_model
    assert job["status"] == "succeeded", job
    assert job["epoch"] == job["epochs"] == QUICK_JOB["epochs"]
    assert [row["epoch"] for row in job["history"]] == list(range(1, QUICK_JOB["epochs"] + 1))
    assert job["model_id"] and job["test_accuracy"] > 0.8, job

    images, labels = read_test_images(mnist_dir(), 200)
    one = stack.http.post("/predict", json={"pixels": images[0].tolist()})
    assert one.status_code == 200, one.text
    assert one.json()["label"] == labels[0]
    assert one.json()["model_id"] == job["model_id"]
    batch = stack.http.post("/predict", json={"images": images.tolist()})
    assert batch.status_code == 200, batch.text
    assert np.mean(np.array(batch.json()["labels"]) == labels) > 0.8


def test_stack_is_built_as_documented(stack: Stack) -> None:
    """Redis: AOF, noeviction, a password; containers: tini, restart policy, non-root,
    worker limits; Docker's healthchecks pass."""
    secured = redis.Redis(host="127.0.0.1", port=stack.redis_port, password=stack.redis_password)
    try:
        config = {
            key: secured.config_get(key)[key]
            for key in ("appendonly", "appendfsync", "maxmemory-policy")
        }
        assert config == {
            "appendonly": "yes",
            "appendfsync": "everysec",
            "maxmemory-policy": "noeviction",
        }
    finally:
        secured.close()
    anonymous = redis.Redis(host="127.0.0.1", port=stack.redis_port)
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
    finally:
        anonymous.close()

    for service in ("redis", "api", "worker"):
        (container,) = stack.compose.container_ids(service)
        info = inspect(stack.engine, container)
        assert info["HostConfig"]["Init"] is True, service
        assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped", service
        if service != "redis":
            assert info["Config"]["User"].split(":")[0] == APP_UID, service
    (worker,) = stack.compose.container_ids("worker")
    limits = inspect(stack.engine, worker)["HostConfig"]
    assert limits["NanoCpus"] > 0 and limits["Memory"] > 0

    assert stack.wait_health("redis") == "healthy"
    assert stack.wait_health("api") == "healthy"
    # The worker's check runs once a minute: run its command now, as Docker would.
    test = inspect(stack.engine, worker)["Config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD-SHELL"
    docker(stack.engine, "exec", worker, "sh", "-c", test[1], timeout=60)


def test_job_survives_a_worker_restart(stack: Stack) -> None:
    job_id = stack.submit(**LONG_JOB)
    running = stack.wait(
        job_id, lambda j: j["epoch"] >= 3 or j["status"] in FINISHED, "epoch 3", timeout=120
    )
    assert running["status"] == "running", running
    stack.compose.run("restart", "worker", timeout=180)
    job = stack.wait_finished(job_id, timeout=420)
    assert job["status"] == "succeeded", job
    # Put back at an epoch boundary and resumed: one history row per epoch, no gap.
    assert [row["epoch"] for row in job["history"]] == list(range(1, LONG_JOB["epochs"] + 1))
    assert job["model_id"]
    # ...by the warm shutdown (SIGTERM reached celery through tini), not by orphan
    # recovery after a SIGKILL.
    logs = stack.compose.run("logs", "--no-color", "worker", timeout=60)
    assert f"job {job_id}: worker stopping, back to the queue" in logs
    assert f"job {job_id}: resuming from checkpoint at epoch" in logs


def test_models_survive_down_and_come_back_on_up(stack: Stack, quick_model: dict) -> None:
    model_id = quick_model["model_id"]
    listed = [m["id"] for m in stack.http.get("/models").json()["items"]]
    assert model_id in listed

    stack.compose.run("down", "-t", "30", timeout=180)  # volumes kept
    files = {path.name for path in stack.models_dir.glob("*.npz")}
    assert {f"{model}.npz" for model in listed} <= files, files

    stack.compose.run("up", "-d", timeout=300)
    stack.wait_ready()
    after = [m["id"] for m in stack.http.get("/models").json()["items"]]
    assert set(listed) <= set(after), after
    images, labels = read_test_images(mnist_dir(), 1)
    response = stack.http.post(
        "/predict", json={"pixels": images[0].tolist(), "model_id": model_id}
    )
    assert response.status_code == 200, response.text
    assert response.json()["model_id"] == model_id
    assert response.json()["label"] == labels[0]


# --- the S3 variant: docker-compose.s3.yml, no shared models volume, two workers ---------


@pytest.fixture(scope="module")
def s3_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The same images, the default stack taken down first: redis, SeaweedFS, the api and
    two workers, ``up -d --build --scale worker=2`` with docker-compose.s3.yml on top."""
    stack.compose.run("down", "-v", "--remove-orphans", "-t", "5", timeout=180)
    root = tmp_path_factory.mktemp("compose-s3")
    names = ("s3", "master", "volume", "filer")
    ports = dict(zip(names, free_ports_and_the_next(len(names)), strict=True))
    settings = (REPO / "docker-compose.s3.yml").read_text()
    assert "/data/models" in settings  # the override that replaces the shared volume
    secret = secrets.token_hex(16)
    env_file = root / "compose.env"
    env_file.write_text(
        stack.compose.env_file.read_text()
        + f"S3_HOST=127.0.0.1\nS3_PORT={ports['s3']}\nS3_SECRET_KEY={secret}\n"
    )
    override = root / "compose.s3.test.yml"
    host_s3 = {
        "network_mode": "host",
        "build": {"network": "host", "context": ".", "dockerfile": "docker/seaweedfs/Dockerfile"},
        "environment": {
            "S3_BIND": "127.0.0.1",
            "S3_MASTER_PORT": str(ports["master"]),
            "S3_VOLUME_PORT": str(ports["volume"]),
            "S3_FILER_PORT": str(ports["filer"]),
            "S3_GRPC_OFFSET": "1",  # each port + 1, free too (free_ports_and_the_next)
        },
    }
    override.write_text(json.dumps({"services": {"s3": host_s3}}))
    files = [*stack.compose.files[:1], REPO / "docker-compose.s3.yml", *stack.compose.files[1:]]
    compose = Compose(
        stack.compose.command,
        stack.compose.project,
        [*files, override],
        env_file,
        stack.engine.env,
        root / "compose.log",
    )
    s3 = Stack(
        compose, stack.engine, stack.http, stack.models_dir, stack.redis_port, stack.redis_password
    )
    s3.bucket = boto3.client(  # type: ignore[attr-defined]
        "s3",
        endpoint_url=f"http://127.0.0.1:{ports['s3']}",
        aws_access_key_id="mnist",
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )
    try:
        with extra_ca_certificates():
            compose.run("up", "-d", "--build", "--scale", "worker=2", timeout=900)
        s3.wait_ready()
        yield s3
    finally:
        compose.run("logs", "--no-color", "--timestamps", timeout=60, check=False)
        compose.run("down", "-v", "--remove-orphans", "-t", "5", timeout=180, check=False)


def test_the_s3_variant_shares_no_models_volume_and_scales_workers(s3_stack: Stack) -> None:
    assert len(s3_stack.compose.container_ids("worker")) == 2
    for service in ("api", "worker"):
        for container in s3_stack.compose.container_ids(service):
            mounts = inspect(s3_stack.engine, container)["Mounts"]
            models = [m for m in mounts if m["Destination"] == "/data/models"]
            assert len(models) == 1 and models[0]["Type"] == "volume", mounts
            assert not models[0]["Name"].endswith("_models"), models  # anonymous, its own
    ready = s3_stack.http.get("/readyz").json()
    assert ready["store"] == "ok", ready

    job = s3_stack.wait_finished(s3_stack.submit(**QUICK_JOB), timeout=240)
    assert job["status"] == "succeeded", job
    images, labels = read_test_images(mnist_dir(), 1)
    answer = s3_stack.http.post(
        "/predict", json={"pixels": images[0].tolist(), "model_id": job["model_id"]}
    )
    assert answer.status_code == 200 and answer.json()["label"] == labels[0]
    # Nothing in the old shared folder (it still holds the default stack's models).
    assert not list(s3_stack.models_dir.glob(f"{job['model_id']}*")), job["model_id"]
    listed = s3_stack.bucket.list_objects_v2(Bucket="mnist", Prefix="service/")  # type: ignore[attr-defined]
    keys = {item["Key"] for item in listed.get("Contents", [])}
    assert f"service/{job['model_id']}.npz" in keys, keys  # the model is in the bucket
