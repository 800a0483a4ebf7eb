"""HTTP latency of ``POST /predict`` against a running service, next to the API's own
floor, ``GET /livez``, measured in the same run over one keep-alive connection.

Single-image requests alternate with ``/livez`` requests, so a busy neighbour slows
both alike. The 1,000-image batch is timed end to end and by the server itself
(the ``mnist_http_request_duration_seconds`` histogram of ``GET /metrics``, before
and after). Targets (issue 3): single image <= 1.5x ``/livez`` (medians); a
1,000-image batch in <= 50 ms of server time. Needs a trained model.

    .venv/bin/python -m bench.predict --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time

import httpx
import numpy as np

from bench.common import load_mnist, median, record, table

BATCH = 1000


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def server_seconds(client: httpx.Client, route: str) -> tuple[float, float]:
    """(sum of seconds, count) the server recorded for ``POST route``."""
    text = client.get("/metrics").text
    found = {}
    for kind in ("sum", "count"):
        pattern = (
            rf'^mnist_http_request_duration_seconds_{kind}\{{[^}}]*method="POST"'
            rf'[^}}]*route="{re.escape(route)}"[^}}]*\}} (\S+)$'
        )
        match = re.search(pattern, text, re.MULTILINE)
        found[kind] = float(match.group(1)) if match else float("nan")
    return found["sum"], found["count"]


def in_process(single: bytes, batch: bytes, images: np.ndarray) -> list[tuple[str, float]]:
    """What a request costs inside the API process: parsing and the arithmetic."""
    from api import predict_body
    from api.serving import predict
    from shared.ml import mlp
    from shared.registry.files import LoadedModel
    from shared.schemas.predict import PredictRequest

    rng = np.random.default_rng(0)
    weights = mlp.init_weights(784, 100, 10, rng, np.float32)
    model = LoadedModel(None, weights, {"input_scale": 1 / 255}, "", 0)  # type: ignore[arg-type]

    def median_ms(fn, n: int) -> float:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return median(times) * 1e3

    one = images[:1].astype(np.float32)
    many = images[:BATCH].astype(np.float32)
    pydantic, fast = PredictRequest.model_validate_json, predict_body.parse
    return [
        ("pydantic alone: parse + validate, 1 image", median_ms(lambda: pydantic(single), 200)),
        (f"pydantic alone, {BATCH} images", median_ms(lambda: pydantic(batch), 5)),
        (
            "api.predict_body.parse (what /predict runs), 1 image",
            median_ms(lambda: fast(single), 200),
        ),
        (f"api.predict_body.parse, {BATCH} images", median_ms(lambda: fast(batch), 5)),
        ("api.serving.predict (784-100-10), 1 image", median_ms(lambda: predict(model, one), 200)),
        (f"api.serving.predict, {BATCH} images", median_ms(lambda: predict(model, many), 20)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=500, help="single-image requests")
    parser.add_argument("--batches", type=int, default=30, help="1,000-image requests")
    parser.add_argument("--api-key", default=os.environ.get("API_KEY"))
    parser.add_argument("--no-record", action="store_true", help="write no file to bench/results/")
    args = parser.parse_args()

    images = load_mnist().test_images
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["X-API-Key"] = args.api_key
    singles = [json.dumps({"pixels": images[i].tolist()}).encode() for i in range(100)]
    batch = json.dumps({"images": images[:BATCH].tolist()}).encode()

    with httpx.Client(base_url=args.url, headers=headers, timeout=60) as client:
        probe = client.post("/predict", content=singles[0])
        if probe.status_code != 200:
            raise SystemExit(f"POST /predict answered {probe.status_code}: {probe.text[:300]}")
        model_id = probe.json()["model_id"]
        for i in range(30):  # warm up: connection, caches, the model load
            client.get("/livez")
            client.post("/predict", content=singles[i % len(singles)])
        livez, single = [], []
        for i in range(args.requests):
            started = time.perf_counter()
            client.get("/livez").raise_for_status()
            middle = time.perf_counter()
            client.post("/predict", content=singles[i % len(singles)]).raise_for_status()
            livez.append(middle - started)
            single.append(time.perf_counter() - middle)
        client.post("/predict", content=batch).raise_for_status()
        sum_before, count_before = server_seconds(client, "/predict")
        batch_wall = []
        for _ in range(args.batches):
            started = time.perf_counter()
            client.post("/predict", content=batch).raise_for_status()
            batch_wall.append(time.perf_counter() - started)
        sum_after, count_after = server_seconds(client, "/predict")
    server_batch = (sum_after - sum_before) / max(count_after - count_before, 1)

    floor = median(livez)

    def row(name: str, times: list[float]) -> tuple[object, ...]:
        ms = [t * 1e3 for t in times]
        return (name, len(ms), f"{median(ms):.2f}", f"{percentile(ms, 90):.2f}",
                f"{median(times) / floor:.2f}")  # fmt: skip

    rows = [
        row("GET /livez", livez),
        row("POST /predict, 1 image", single),
        row(f"POST /predict, {BATCH} images", batch_wall),
    ]
    body = table(("request", "n", "median ms", "p90 ms", "÷ /livez median"), rows)
    ratio = median(single) / floor
    summary = (
        f"single image ÷ /livez: {ratio:.2f} "
        f"(target ≤ 1.5: {'met' if ratio <= 1.5 else 'missed'}); "
        f"{BATCH}-image batch: {server_batch * 1e3:.1f} ms mean server time from /metrics "
        f"(target ≤ 50 ms: {'met' if server_batch <= 0.05 else 'missed'}), "
        f"request body {len(batch) / 1e6:.1f} MB; model {model_id}"
    )
    costs = in_process(singles[0], batch, images)
    parts = table(("inside the API process", "median ms"), [(k, f"{v:.3f}") for k, v in costs])
    text = f"Service at {args.url}\n\n{body}\n\n{summary}\n\n{parts}"
    print(f"\n{text}")
    if not args.no_record:
        record("Predictions over HTTP", text, packages=("fastapi", "uvicorn", "pydantic", "httpx"))


if __name__ == "__main__":
    main()
