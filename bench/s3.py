"""What the S3 artifact store costs (issue 19), against the local store, in one run.

1. A fast-preset job (the worker's own ``run_job``, in this process) with the S3 store
   and with the local store, ``--jobs`` rounds of one each (the order alternating, after
   an uncounted warm-up job): the median of the rounds' ratios. Target <= 1.05.
2. The first ``POST /predict`` of a model on an API host that has never loaded it (the
   object store on loopback; the host's cache empty): p50 over ``--models`` models.
   Target <= 30 ms. Then the same models again, cached: ``/predict`` over ``/livez``
   with the S3 store against the same ratio with the local store: unchanged.
3. A checkpoint of the fast preset's size written per epoch with S3: median and p99.

Starts its own redis-server, SeaweedFS and uvicorn processes on loopback.

    .venv/bin/python -m bench.s3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from bench.common import load_mnist, median, mnist_dir, record, table
from shared.config import Settings
from shared.ml import training
from shared.schemas.jobs import Job
from shared.schemas.params import Preset, with_preset
from shared.services import Services
from tests import models
from tests.procs import free_port, redis_server, service_env, start_api, stop
from tests.seaweed import ACCESS_KEY, SECRET_KEY, seaweed_server
from worker.run import run_job

FAST = with_preset(Preset.fast, None)


def settings_for(redis_url: str, root: Path, artifact_uri: str | None, endpoint: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        model_dir=root / "models",
        cache_dir=root / "cache",
        artifact_uri=artifact_uri,
        s3_endpoint_url=endpoint if artifact_uri else None,
        s3_region="us-east-1",
        mnist_dir=mnist_dir(),
        mnist_download=False,
    )


def job_wall(settings: Settings) -> float:
    services = Services.connect(settings)
    job = Job(id=uuid.uuid4(), params=FAST, epochs=FAST.epochs)
    services.jobs.create(job, max_queued=10)
    started = time.perf_counter()
    assert run_job(job.id, services).value == "succeeded"
    return time.perf_counter() - started


@contextmanager
def api(env: dict[str, str], root: Path) -> Iterator[httpx.Client]:
    port = free_port()
    proc = start_api(env, root / f"api-{port}.log", port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        stop(proc)


def predict_ms(client: httpx.Client, body: dict) -> float:
    started = time.perf_counter()
    answer = client.post("/predict", json=body)
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200, answer.text
    return elapsed


def livez_ms(client: httpx.Client) -> float:
    started = time.perf_counter()
    client.get("/livez")
    return (time.perf_counter() - started) * 1000


def cached_ratio(client: httpx.Client, ids: list[uuid.UUID], pixels: list[int]) -> float:
    """Median /predict over median /livez, alternating, on models already loaded."""
    predicted, live = [], []
    for _ in range(10):
        for model_id in ids:
            predicted.append(predict_ms(client, {"pixels": pixels, "model_id": str(model_id)}))
            live.append(livez_ms(client))
    return median(predicted) / median(live)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--models", type=int, default=30)
    parser.add_argument("--checkpoints", type=int, default=100)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    load_mnist()  # warm the page cache
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server(Path(tmp) / "redis") as redis_url,
        seaweed_server(Path(tmp) / "weed") as s3,
    ):
        root = Path(tmp)
        bucket = s3.create_bucket("bench")
        on_s3 = settings_for(redis_url, root / "s3", f"s3://{bucket}/svc", s3.endpoint_url)
        local = settings_for(redis_url, root / "local", None, s3.endpoint_url)

        job_wall(local)  # warm-up, not counted: first imports, BLAS, the page cache
        walls: dict[str, list[float]] = {"s3": [], "local": []}
        ratios = []  # S3 / local within a round; the order alternates round by round
        for round_ in range(args.jobs):
            order = ("local", "s3") if round_ % 2 == 0 else ("s3", "local")
            for name in order:
                walls[name].append(job_wall(local if name == "local" else on_s3))
            ratios.append(walls["s3"][-1] / walls["local"][-1])
        job_ratio = median(ratios)

        services = Services.connect(on_s3)
        ids = [models.register(services.models, seed=k) for k in range(args.models)]
        for model_id in ids:  # the registering side cached them: the API host must not
            sha = services.registry.get_model(model_id).sha256  # type: ignore[union-attr]
            (on_s3.cache_root / f"{sha}.bin").unlink(missing_ok=True)
        pixels = np.asarray(load_mnist().test_images[0]).tolist()
        env_s3 = service_env(
            redis_url,
            on_s3.model_dir,
            ARTIFACT_URI=str(on_s3.artifact_uri),
            S3_ENDPOINT_URL=s3.endpoint_url,
            S3_REGION="us-east-1",
            CACHE_DIR=str(root / "api-cache"),
            MODEL_CACHE_SIZE=str(args.models + 1),
        )
        with api(env_s3, root) as client:
            first = [predict_ms(client, {"pixels": pixels, "model_id": str(i)}) for i in ids]
            ratio_s3 = cached_ratio(client, ids, pixels)
        local_services = Services.connect(local)
        local_ids = [models.register(local_services.models, seed=k) for k in range(5)]
        env_local = service_env(redis_url, local.model_dir, MODEL_CACHE_SIZE=str(args.models + 1))
        with api(env_local, root) as client:
            for i in local_ids:
                predict_ms(client, {"pixels": pixels, "model_id": str(i)})
            ratio_local = cached_ratio(client, local_ids, pixels)

        state = training.init_state(FAST)
        job = Job(id=uuid.uuid4(), params=FAST, epochs=FAST.epochs)
        services.jobs.create(job, max_queued=10)
        fence = services.leases.acquire(job.id, "bench", 60)
        assert fence is not None
        writes = []
        for epoch in range(args.checkpoints):
            state.epoch = epoch
            started = time.perf_counter()
            services.checkpoints.save(job.id, state, fence)
            writes.append((time.perf_counter() - started) * 1000)

    rows = [
        (
            f"fast-preset job wall, S3 / local (median over {args.jobs} rounds; walls: S3 "
            f"{median(walls['s3']):.2f} s, local {median(walls['local']):.2f} s)",
            f"{job_ratio:.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f})",
            "<= 1.05",
        ),
        (
            f"first /predict of a never-loaded model, p50 over {args.models} (p90)",
            f"{median(first):.1f} ms ({float(np.percentile(first, 90)):.1f} ms)",
            "<= 30 ms",
        ),
        (
            "cached /predict over /livez (medians), S3 vs local",
            f"{ratio_s3:.2f}x vs {ratio_local:.2f}x",
            "unchanged",
        ),
        (
            f"checkpoint write per epoch with S3 ({args.checkpoints} writes), median / p99",
            f"{statistics.median(writes):.1f} ms / {float(np.percentile(writes, 99)):.1f} ms",
            "measured",
        ),
    ]
    print(table(("measure", "result", "target"), rows))
    record(
        "S3 artifact store against the local one",
        table(("measure", "result", "target"), rows),
        packages=("boto3", "botocore", "fastapi", "uvicorn"),
    )


if __name__ == "__main__":
    main()
