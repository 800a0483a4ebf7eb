"""Sweep wall time with one worker process and with two (issue 12).

Target: the same 8-trial sweep takes at most 0.6x the wall time with two worker
processes that it takes with one, on this 2-core machine; and what a trial costs
besides its own training (ask, queue, start, report).

Each configuration gets its own private stack on loopback, started here and stopped
with SIGTERM at the end whatever happened: ``redis-server``, ``uvicorn api.main:app``
and N x ``celery -A worker.app worker --concurrency 1`` with ``BLAS_THREADS=1`` (one
core each). The sweep is the same in both: ``POST /sweeps?preset=fast`` with a fixed
seed, the ``random`` sampler and no pruner (so both runs train the very same trials),
``parallel`` 2 (so one worker always has its next trial queued).

Wall time is from ``POST /sweeps`` to the sweep settled (read every 0.1 s). Per
trial, from its job record: *queue + start* = ``created_at`` -> ``started_at``;
*training* = the sum of its epochs' ``seconds``; *run besides training* (loading the
data, the final evaluation, saving the model) = the rest of ``started_at`` ->
``finished_at``; *report + ask* = its ``finished_at`` -> the ``created_at`` of the
trial that took its slot (the i-th trial to finish frees the slot of the
(parallel + i)-th trial created).

    .venv/bin/python -m bench.sweep
    .venv/bin/python -m bench.sweep --trials 4 --epochs 3 --no-record   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import record, table
from bench.feedback import ok
from bench.procs import celery_worker, redis_server, service_env, uvicorn, wait_for

TARGET_RATIO = 0.6
ENDED = {"succeeded", "failed", "cancelled"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--workers", default="1,2", help="worker processes per run")
    parser.add_argument("--no-record", action="store_true", help="print only")
    return parser.parse_args(argv)


def sweep_body(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "base": {"epochs": args.epochs, "train_size": args.train_size},
        "space": {
            "eta": {"low": 0.005, "high": 0.1, "log": True},
            "n_hidden": {"low": 50, "high": 150},
        },
        "trials": args.trials,
        "parallel": args.parallel,
        "sampler": "random",
        "pruner": "none",
        "seed": args.seed,
    }


@contextlib.contextmanager
def stack(root: Path, workers: int) -> Iterator[str]:
    """redis-server, uvicorn and ``workers`` Celery workers (one process, one BLAS thread
    each) on loopback; yields the API's URL once every worker is ready."""
    with redis_server(root) as redis_url, contextlib.ExitStack() as started:
        env = service_env(redis_url, root / "models", BLAS_THREADS="1", PYTHONUNBUFFERED="1")
        _, port = started.enter_context(uvicorn(env, root))
        log = root / "worker.log"
        for n in range(workers):
            flags = ("--concurrency", "1", "--hostname", f"w{n}@%h")
            started.enter_context(celery_worker(env, log, *flags))
        wait_for(lambda: log.read_text().count("ready.") >= workers, "the workers", 90)
        yield f"http://127.0.0.1:{port}"


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def run_sweep(url: str, body: dict[str, Any]) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=30) as http:
        start = time.monotonic()
        accepted = ok(http.post("/sweeps", params={"preset": "fast"}, json=body), 202)
        while True:
            sweep = ok(http.get(f"/sweeps/{accepted['id']}"))
            if sweep["status"] in ENDED and sweep["settled"]:
                break
            time.sleep(0.1)
        wall = time.monotonic() - start
        if sweep["status"] != "succeeded":
            raise RuntimeError(f"sweep {sweep['id']} {sweep['status']}: {sweep.get('error')}")
        jobs = [ok(http.get(f"/jobs/{t['job_id']}")) for t in sweep["trials"]]
    return {"wall": wall, "sweep": sweep, "jobs": jobs}


def overheads(jobs: list[dict[str, Any]], parallel: int) -> dict[str, list[float]]:
    """Seconds per trial: queue+start, training, run besides training, report+ask."""
    out: dict[str, list[float]] = {"queue": [], "train": [], "rest": [], "report": []}
    for job in jobs:
        started, finished = when(job["started_at"]), when(job["finished_at"])
        training = sum(row["seconds"] for row in job["history"])
        out["queue"].append((started - when(job["created_at"])).total_seconds())
        out["train"].append(training)
        out["rest"].append((finished - started).total_seconds() - training)
    created = sorted(when(j["created_at"]) for j in jobs)
    finished = sorted(when(j["finished_at"]) for j in jobs)
    for done, successor in zip(finished, created[parallel:], strict=False):
        out["report"].append((successor - done).total_seconds())
    return out


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.3f} (max {max(values):.3f})"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    body = sweep_body(args)
    counts = [int(n) for n in args.workers.split(",")]
    results: dict[int, dict[str, Any]] = {}
    for workers in counts:
        with (
            tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp,
            stack(Path(tmp), workers) as url,
        ):
            print(f"{workers} worker(s): sweep of {args.trials} trials ...", flush=True)
            results[workers] = run_sweep(url, body)
            print(f"  {results[workers]['wall']:.1f} s", flush=True)
    rows = []
    for workers, result in results.items():
        sweep = result["sweep"]
        o = overheads(result["jobs"], args.parallel)
        rows.append(
            (
                workers,
                f"{result['wall']:.1f}",
                f"{sweep['wall_seconds']:.1f}",
                f"{sum(o['train']):.1f}",
                fmt(o["queue"]),
                fmt(o["train"]),
                fmt(o["rest"]),
                fmt(o["report"]),
                f"{100 * sweep['best']['value']:.2f}%",
            )
        )
    header = (
        "workers",
        "wall s (POST to settled)",
        "sweep wall_seconds",
        "sum of training s",
        "queue+start s per trial, median (max)",
        "training s per trial",
        "run besides training s",
        "report+ask s",
        "best val acc",
    )
    lines = [table(header, rows), ""]
    if 1 in results and 2 in results:
        ratio = results[2]["wall"] / results[1]["wall"]
        verdict = "met" if ratio <= TARGET_RATIO else "missed"
        lines.append(f"**two workers / one: {ratio:.3f}x** (target <= {TARGET_RATIO}x: {verdict})")
        same = [
            [t["params"] for t in sorted(r["sweep"]["trials"], key=lambda t: t["number"])]
            for r in (results[1], results[2])
        ]
        lines.append(f"\nboth runs trained the same trials: {same[0] == same[1]}")
    lines.append(f"\nsweep: `POST /sweeps?preset=fast` with `{body}`")
    text = "\n".join(lines)
    print(text)
    if not args.no_record:
        record("Sweep wall time, one worker vs two", text, packages=("optuna", "celery"))


if __name__ == "__main__":
    main()
