"""Load test (issue 4): concurrent ``POST /predict`` against a running service while
two training jobs run. Target: zero 5xx (and zero transport errors).

Starts two long training jobs, waits until both are ``running``, then for a fixed
time C clients send a mix of single-image and 100-image requests (real MNIST test
images, bodies encoded once beforehand). Records per kind count, p50/p99 latency and
the HTTP statuses, samples how many trainings were running, then cancels them.
Exits non-zero on any 5xx or transport error. Needs a trained model (or
``--train-if-empty``); start the service with ``WORKER_CONCURRENCY=2`` so that both
trainings can run at once.

    .venv/bin/python -m bench.load --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np

from bench.common import load_mnist, record, table

FINISHED = {"succeeded", "failed", "cancelled"}
SMALL_MODEL = {"epochs": 2, "train_size": 5000}  # with ?preset=fast: a few seconds


@dataclass
class Kind:
    """What one kind of request saw."""

    name: str
    seconds: list[float] = field(default_factory=list)  # every request that got a status
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    images_checked: int = 0
    images_correct: int = 0

    @property
    def count(self) -> int:
        return len(self.seconds)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def n_transport_errors(self) -> int:
        return sum(self.transport_errors.values())

    def ms(self, q: float) -> float:
        return float(np.percentile(self.seconds, q)) * 1e3 if self.seconds else float("nan")


@dataclass
class Report:
    kinds: dict[str, Kind]
    duration: float
    concurrency: int
    jobs: list[str]
    running_samples: list[int]
    job_statuses_after: dict[str, str]
    model_ids: Counter[str]
    notes: list[str]

    @property
    def server_errors(self) -> int:
        return sum(k.server_errors for k in self.kinds.values())

    @property
    def transport_errors(self) -> int:
        return sum(k.n_transport_errors for k in self.kinds.values())

    @property
    def ok(self) -> bool:
        return self.server_errors == 0 and self.transport_errors == 0

    def text(self, url: str) -> str:
        rows = []
        for k in self.kinds.values():
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(k.statuses.items())) or "none"
            errors = ", ".join(f"{e}: {n}" for e, n in sorted(k.transport_errors.items()))
            accuracy = f"{k.images_correct / k.images_checked:.2%}" if k.images_checked else "n/a"
            rate = f"{k.count / self.duration:.1f}" if self.duration else "n/a"
            rows.append((k.name, k.count, rate, f"{k.ms(50):.1f}", f"{k.ms(99):.1f}",
                         statuses, errors or "0", accuracy))  # fmt: skip
        body = table(
            ("request", "n", "per s", "p50 ms", "p99 ms", "HTTP statuses", "transport errors",
             "labels correct"),
            rows,
        )  # fmt: skip
        samples = self.running_samples
        both = sum(n >= len(self.jobs) for n in samples)
        running = (
            f"trainings running, sampled every 0.5 s during the load phase: "
            f"{both} of {len(samples)} samples had all {len(self.jobs)} running "
            f"(min {min(samples, default=0)}, max {max(samples, default=0)})"
        )
        after = ", ".join(f"{j[:8]}… {s}" for j, s in self.job_statuses_after.items())
        models = ", ".join(f"{m[:8]}… {n} answers" for m, n in self.model_ids.most_common())
        verdict = (
            f"5xx: {self.server_errors}, transport errors: {self.transport_errors} "
            f"(target: zero 5xx: **{'met' if self.ok else 'missed'}**)"
        )
        lines = [
            f"Service at {url}; {self.concurrency} concurrent clients for "
            f"{self.duration:.1f} s; {len(self.jobs)} training jobs started.",
            "",
            body,
            "",
            f"- {running}",
            f"- training jobs after the load phase: {after or 'none'}",
            f"- models that answered: {models or 'none'}",
            *(f"- {note}" for note in self.notes),
            "",
            verdict,
        ]
        return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument("--batch-size", type=int, default=100, help="images per batch request")
    parser.add_argument(
        "--batch-share", type=float, default=0.25, help="share of requests that are batches"
    )
    parser.add_argument("--trainings", type=int, default=2, help="training jobs to run alongside")
    parser.add_argument(
        "--training-body",
        default='{"epochs": 1000}',
        help="JSON body of each training job, sent with ?preset=fast (long enough to outlast "
        "the load phase; they are cancelled afterwards)",
    )
    parser.add_argument(
        "--running-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for all trainings to be running before loading anyway",
    )
    parser.add_argument(
        "--train-if-empty",
        action="store_true",
        help=f"no model yet: train a small one first (?preset=fast, {json.dumps(SMALL_MODEL)})",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=os.environ.get("API_KEY"))
    parser.add_argument("--no-record", action="store_true", help="write no file to bench/results/")
    return parser.parse_args(argv)


async def job_status(client: httpx.AsyncClient, job_id: str) -> str:
    response = await client.get(f"/jobs/{job_id}")
    response.raise_for_status()
    return response.json()["status"]


async def submit(client: httpx.AsyncClient, body: dict) -> str:
    response = await client.post("/jobs", params={"preset": "fast"}, json=body)
    if response.status_code != 202:
        raise SystemExit(f"POST /jobs answered {response.status_code}: {response.text[:300]}")
    return response.json()["id"]


async def ensure_model(client: httpx.AsyncClient, train_if_empty: bool) -> None:
    response = await client.get("/models")
    response.raise_for_status()
    if response.json()["items"]:
        return
    if not train_if_empty:
        raise SystemExit(
            "GET /models is empty: no trained model to predict with. Train one "
            "(POST /jobs) or run again with --train-if-empty."
        )
    job_id = await submit(client, SMALL_MODEL)
    print(f"no model yet: training a small one, job {job_id}")
    deadline = time.monotonic() + 300
    while (status := await job_status(client, job_id)) not in FINISHED:
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} still {status} after 300 s")
        await asyncio.sleep(0.5)
    if status != "succeeded":
        raise SystemExit(f"training the small model ended {status}")


async def wait_running(
    client: httpx.AsyncClient, jobs: list[str], timeout: float
) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = {j: await job_status(client, j) for j in jobs}
        done = all(s == "running" for s in statuses.values())
        if done or time.monotonic() > deadline or any(s in FINISHED for s in statuses.values()):
            return statuses
        await asyncio.sleep(0.2)


async def cancel(client: httpx.AsyncClient, jobs: list[str]) -> dict[str, str]:
    """Cancel every job still going; wait (bounded) until they have stopped."""
    for job_id in jobs:
        response = await client.post(f"/jobs/{job_id}/cancel")
        if response.status_code not in (202, 409):  # 409: it had ended already
            print(f"cancelling {job_id}: {response.status_code} {response.text[:200]}")
    deadline = time.monotonic() + 60
    while True:
        records = [(await client.get(f"/jobs/{j}")).json() for j in jobs]
        if all(r["status"] in FINISHED for r in records) or time.monotonic() > deadline:
            return {
                r["id"]: f"{r['status']} at epoch {r['epoch']} of {r['epochs']}" for r in records
            }
        await asyncio.sleep(0.2)


async def run(args: argparse.Namespace) -> Report:
    data = load_mnist()
    images, labels = data.test_images, np.asarray(data.test_labels)
    rng = random.Random(args.seed)
    n = len(images)
    singles = [
        (json.dumps({"pixels": images[i].tolist()}).encode(), [int(labels[i])])
        for i in rng.sample(range(n), 200)
    ]
    batches = []
    for _ in range(20):
        start = rng.randrange(0, n - args.batch_size)
        chosen = slice(start, start + args.batch_size)
        body = json.dumps({"images": images[chosen].tolist()}).encode()
        batches.append((body, labels[chosen].tolist()))

    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["X-API-Key"] = args.api_key
    limits = httpx.Limits(max_connections=args.concurrency + 4, max_keepalive_connections=None)
    kinds = {
        "single": Kind("POST /predict, 1 image"),
        "batch": Kind(f"POST /predict, {args.batch_size} images"),
        "poll": Kind("GET /jobs/{id} (sampling the trainings)"),
    }
    model_ids: Counter[str] = Counter()
    notes: list[str] = []

    async with httpx.AsyncClient(
        base_url=args.url, headers=headers, timeout=args.timeout, limits=limits
    ) as client:
        await ensure_model(client, args.train_if_empty)
        probe = await client.post("/predict", content=singles[0][0])
        if probe.status_code != 200:
            raise SystemExit(f"POST /predict answered {probe.status_code}: {probe.text[:300]}")

        training_body = json.loads(args.training_body)
        jobs: list[str] = []
        try:
            for _ in range(args.trainings):
                jobs.append(await submit(client, training_body))
            duration, running_samples = await load_phase(
                args, client, jobs, kinds, singles, batches, model_ids, notes
            )
        finally:  # never leave the trainings running, whatever happened
            after = await cancel(client, jobs)

    if not jobs:
        del kinds["poll"]
    return Report(kinds, duration, args.concurrency, jobs, running_samples, after, model_ids, notes)


async def load_phase(
    args: argparse.Namespace,
    client: httpx.AsyncClient,
    jobs: list[str],
    kinds: dict[str, Kind],
    singles: list[tuple[bytes, list[int]]],
    batches: list[tuple[bytes, list[int]]],
    model_ids: Counter[str],
    notes: list[str],
) -> tuple[float, list[int]]:
    """Wait for the trainings to run, then load; returns (seconds, running samples)."""
    print(f"started {len(jobs)} training jobs (?preset=fast, {args.training_body}): {jobs}")
    before = await wait_running(client, jobs, args.running_timeout)
    print("before the load phase: " + ", ".join(f"{j[:8]}… {s}" for j, s in before.items()))
    if jobs and not all(s == "running" for s in before.values()):
        notes.append(
            "not every training was running when the load phase began: "
            + ", ".join(f"{j[:8]}… {s}" for j, s in before.items())
            + " (does the worker run with WORKER_CONCURRENCY=2?)"
        )

    async def timed(kind: Kind, send) -> httpx.Response | None:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            response = await send()
        except httpx.TransportError as exc:
            kind.transport_errors[type(exc).__name__] += 1
            return None
        kind.seconds.append(time.perf_counter() - started)
        kind.statuses[response.status_code] += 1
        return response

    phase_ends = time.monotonic() + args.duration

    async def predict_client(worker: int) -> None:
        own = random.Random(args.seed * 1000 + worker)
        while time.monotonic() < phase_ends:
            is_batch = own.random() < args.batch_share
            kind = kinds["batch" if is_batch else "single"]
            body, truth = own.choice(batches if is_batch else singles)
            response = await timed(kind, lambda b=body: client.post("/predict", content=b))
            if response is not None and response.status_code == 200:
                answer = response.json()
                got = answer["labels"] if is_batch else [answer["label"]]
                kind.images_checked += len(truth)
                kind.images_correct += sum(a == b for a, b in zip(got, truth, strict=True))
                model_ids[answer["model_id"]] += 1

    running_samples: list[int] = []

    async def sampler() -> None:
        while time.monotonic() < phase_ends:
            running = 0
            for job_id in jobs:
                response = await timed(kinds["poll"], lambda j=job_id: client.get(f"/jobs/{j}"))
                if response is not None and response.status_code == 200:
                    running += response.json()["status"] == "running"
            running_samples.append(running)
            await asyncio.sleep(0.5)

    started = time.monotonic()
    await asyncio.gather(sampler(), *(predict_client(i) for i in range(args.concurrency)))
    return time.monotonic() - started, running_samples


def main(argv: Sequence[str] | None = None) -> Report:
    args = parse_args(argv)
    report = asyncio.run(run(args))
    text = report.text(args.url)
    print(f"\n{text}")
    if not args.no_record:
        record(
            f"Load: concurrent /predict while {args.trainings} trainings run",
            text,
            packages=("fastapi", "uvicorn", "celery", "httpx"),
        )
    return report


if __name__ == "__main__":
    raise SystemExit(0 if main().ok else 1)
