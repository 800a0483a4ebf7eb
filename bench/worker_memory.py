"""Worker memory (issue 3): RSS of the real Celery worker while it trains on all of MNIST.
Target: ≤ 400 MB RSS with MNIST loaded.

Starts a private ``redis-server`` (loopback, free port, nothing on disk) and the worker
exactly as compose and ``scripts/dev`` run it, ``celery -A worker.app worker``, with
``--concurrency 1`` (``--concurrency N`` sets WORKER_CONCURRENCY too; REDIS_URL, a
temporary MODEL_DIR, MNIST_DIR from the environment or ``../shared/mnist``;
MNIST_DOWNLOAD=false). Each run submits one training job per pool child the way
``POST /jobs`` does (job record in the registry, then ``send_task``), samples every
~0.2 s the RSS (``VmRSS``) and PSS (``smaps_rollup``) of the worker's main process and
of its pool child(ren), and reads each one's peak (``VmHWM``, reset before every run
through ``clear_refs``) once the job has succeeded. Then SIGTERM to the worker, then
to Redis, whatever happened.

RSS counts the pages a fork shares with its parent in both processes, so the sum of
the RSS columns over-counts; the PSS sum splits shared pages between the sharers and
is what the processes take together.

    .venv/bin/python -m bench.worker_memory
    .venv/bin/python -m bench.worker_memory --runs book --epochs 5
    .venv/bin/python -m bench.worker_memory --concurrency 2   # two children, two jobs at once
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID, uuid4

from bench.common import mnist_dir, record, table
from bench.procs import (
    celery_worker,
    children,
    hwm_mb,
    pss_mb,
    redis_server,
    reset_peak,
    rss_mb,
    service_env,
)
from shared.config import Settings
from shared.jobs.queue import TRAIN_TASK, make_celery
from shared.jobs.store import JobStore
from shared.redisdb.client import connect
from shared.redisdb.keys import Keys
from shared.schemas.jobs import Job, JobStatus
from shared.schemas.params import Preset, TrainParams, with_preset

TARGET_MB = 400.0
MIB = 1024 * 1024
FINISHED = {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# sampling


@dataclass
class Proc:
    pid: int
    role: str
    idle_mb: float | None = None  # RSS when the job was submitted
    peak_rss_mb: float = 0.0  # highest sampled VmRSS
    peak_pss_mb: float = 0.0
    hwm_mb: float | None = None  # VmHWM after the job
    after_mb: float | None = None  # RSS after the job
    after_pss_mb: float | None = None


@dataclass
class Run:
    name: str
    params: TrainParams
    job_ids: list[UUID]
    statuses: list[str] = field(default_factory=list)
    seconds: float = 0.0
    test_accuracies: list[float] = field(default_factory=list)
    procs: dict[int, Proc] = field(default_factory=dict)
    samples: int = 0
    peak_sum_rss_mb: float = 0.0  # highest sum over one sample
    peak_sum_pss_mb: float = 0.0
    hwm_reset: bool = False


class Sampler:
    """Samples the worker and its children every ``interval`` s in a thread."""

    def __init__(self, main_pid: int, run: Run, interval: float) -> None:
        self.main_pid, self.run, self.interval = main_pid, run, interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def pids(self) -> list[tuple[int, str]]:
        return [(self.main_pid, "worker main process"), *(
            (c, "pool child") for c in children(self.main_pid)
        )]  # fmt: skip

    def sample(self) -> None:
        total_rss = total_pss = 0.0
        for pid, role in self.pids():
            rss = rss_mb(pid)
            if rss is None:
                continue
            pss = pss_mb(pid) or 0.0
            proc = self.run.procs.setdefault(pid, Proc(pid, role, idle_mb=rss))
            proc.peak_rss_mb = max(proc.peak_rss_mb, rss)
            proc.peak_pss_mb = max(proc.peak_pss_mb, pss)
            total_rss += rss
            total_pss += pss
        self.run.samples += 1
        self.run.peak_sum_rss_mb = max(self.run.peak_sum_rss_mb, total_rss)
        self.run.peak_sum_pss_mb = max(self.run.peak_sum_pss_mb, total_pss)

    def _loop(self) -> None:
        while not self._done.wait(self.interval):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def measure(
    name: str,
    params: TrainParams,
    n_jobs: int,
    worker: subprocess.Popen[bytes],
    registry: JobStore,
    settings: Settings,
    interval: float,
    timeout: float,
) -> Run:
    """``n_jobs`` identical jobs at once (one per pool child), submitted as ``POST /jobs``
    does it, sampled until all have finished."""
    jobs = [Job(id=uuid4(), params=params, epochs=params.epochs) for _ in range(n_jobs)]
    run = Run(name, params, [job.id for job in jobs])
    pids = [worker.pid, *children(worker.pid)]
    run.hwm_reset = all(reset_peak(pid) for pid in pids)
    celery = make_celery(settings, main="bench")
    with Sampler(worker.pid, run, interval) as sampler:
        started = time.monotonic()
        for job in jobs:
            registry.create(job, 10**6)
            celery.send_task(TRAIN_TASK, args=[str(job.id)], task_id=str(job.id))
        print(f"{name}: {n_jobs} job(s) submitted "
              f"({params.model_dump_json(exclude_defaults=True)})")  # fmt: skip
        last = ""
        while True:
            records = [registry.get(job.id) for job in jobs]
            if any(r is None for r in records):
                raise RuntimeError("a job record vanished")
            done = [r for r in records if r is not None]
            progress = ", ".join(f"{r.status.value} {r.epoch}/{r.epochs}" for r in done)
            if progress != last:
                last = progress
                total = sum(rss_mb(p) or 0.0 for p, _ in sampler.pids())
                print(f"  {progress}; RSS sum {total:.0f} MB")
            if all(r.status in FINISHED for r in done):
                break
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"jobs not finished after {timeout} s: {progress}")
            time.sleep(interval)
        run.seconds = time.monotonic() - started
        run.statuses = [r.status.value for r in done]
        run.test_accuracies = [r.test_accuracy for r in done if r.test_accuracy is not None]
        time.sleep(1.0)  # the tasks return to the pool; then "after the job"
        sampler.sample()
    for proc in run.procs.values():
        proc.hwm_mb = hwm_mb(proc.pid)
        proc.after_mb = rss_mb(proc.pid)
        proc.after_pss_mb = pss_mb(proc.pid)
    return run


# report


def _mb(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "gone"


def report(run: Run, target_mb: float = TARGET_MB) -> tuple[str, bool]:
    procs = sorted(run.procs.values(), key=lambda p: (p.role != "worker main process", p.pid))
    rows: list[Sequence[object]] = [
        (f"{p.role} (pid {p.pid})", _mb(p.idle_mb), f"{p.peak_rss_mb:.0f}", _mb(p.hwm_mb),
         _mb(p.after_mb), f"{p.peak_pss_mb:.0f}", _mb(p.after_pss_mb))
        for p in procs
    ]  # fmt: skip
    hwm_sum = sum(p.hwm_mb or p.peak_rss_mb for p in procs)
    after_sum = sum(p.after_mb or 0.0 for p in procs)
    rows.append(
        ("**sum**", _mb(sum(p.idle_mb or 0.0 for p in procs)),
         f"{run.peak_sum_rss_mb:.0f} (one sample)", f"**{hwm_sum:.0f}**", f"{after_sum:.0f}",
         f"{run.peak_sum_pss_mb:.0f} (one sample)",
         f"{sum(p.after_pss_mb or 0.0 for p in procs):.0f}")
    )  # fmt: skip
    body = table(
        ("process", "RSS at submit MB", "peak RSS sampled MB", "peak RSS (VmHWM) MB",
         "RSS after job MB", "peak PSS sampled MB", "PSS after job MB"),
        rows,
    )  # fmt: skip
    succeeded = bool(run.statuses) and all(s == "succeeded" for s in run.statuses)
    met = hwm_sum <= target_mb and succeeded
    accuracy = ", ".join(f"{a:.2%}" for a in run.test_accuracies) or "none"
    jobs = f"{len(run.job_ids)} jobs at once" if len(run.job_ids) > 1 else "one job"
    lines = [
        f"**{run.name}**, {jobs}: `{run.params.model_dump_json(exclude_defaults=True)}` "
        f"({run.params.n_hidden} hidden units, all 60,000 training images): "
        f"{', '.join(run.statuses)} in {run.seconds:.1f} s, test accuracy {accuracy}; "
        f"{run.samples} samples.",
        "",
        body,
        "",
        f"Sum of the processes' peaks (VmHWM; an upper bound, the peaks need not coincide, "
        f"and shared pages count in each process): {hwm_sum:.0f} MB against the "
        f"{target_mb:.0f} MB target: **{'met' if met else 'missed'}**"
        + ("" if run.hwm_reset else " (VmHWM could not be reset before the run)"),
    ]
    return "\n".join(lines), met


# main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--runs",
        default="book,fast",
        help="comma-separated presets to train one after the other in the same worker",
    )
    parser.add_argument(
        "--job",
        action="append",
        default=[],
        help="a JSON body of POST /jobs to train after the presets (repeatable), e.g. the "
        "largest job JOB_MEMORY_LIMIT_MB accepts",
    )
    parser.add_argument(
        "--target-mb", type=float, default=TARGET_MB, help="peak (sum of VmHWM) to compare with"
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs of every run")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="celery --concurrency (pool children); each run submits this many jobs at once",
    )
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per job, at most")
    parser.add_argument("--no-record", action="store_true", help="write no file to bench/results/")
    return parser.parse_args(argv)


def worker_env(redis_url: str, model_dir: Path, concurrency: int) -> dict[str, str]:
    # as compose sets it: BLAS threads per child default to cores / WORKER_CONCURRENCY
    return service_env(
        redis_url, model_dir, PYTHONUNBUFFERED="1", WORKER_CONCURRENCY=str(concurrency)
    )


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so that the finally blocks run


def main(argv: Sequence[str] | None = None) -> bool:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    presets = [Preset(name.strip()) for name in args.runs.split(",") if name.strip()]
    base = TrainParams(epochs=args.epochs)
    named = [(f"{p.value} preset", with_preset(p, base)) for p in presets]
    for body in args.job:
        given = TrainParams.model_validate({"epochs": args.epochs, **json.loads(body)})
        named.append((f"job {body}", given))
    if not (mnist_dir() / "train-images-idx3-ubyte.gz").exists():
        raise SystemExit(f"MNIST not found in {mnist_dir()} (set MNIST_DIR)")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="worker-memory-") as tmp:
        root = Path(tmp)
        (root / "redis").mkdir()
        log = root / "worker.log"
        try:
            with (
                redis_server(root / "redis") as redis_url,
                celery_worker(
                    worker_env(redis_url, root / "models", args.concurrency),
                    log,
                    *("--concurrency", str(args.concurrency)),
                ) as worker,
            ):
                settings = Settings(redis_url=redis_url, model_dir=root / "models")
                registry = JobStore(connect(redis_url), Keys(settings.key_prefix))
                wait_until(
                    lambda: b"ready" in log.read_bytes() or worker.poll() is not None,
                    120,
                    "the worker to be ready",
                )
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited with {worker.returncode}")
                print(f"worker ready: pid {worker.pid}, pool {children(worker.pid)}")
                for name, params in named:
                    run = measure(
                        name, params, args.concurrency, worker, registry,
                        settings, args.interval, args.timeout,
                    )  # fmt: skip
                    runs.append(run)
                    if any(s != "succeeded" for s in run.statuses):
                        break
        except BaseException:
            print(f"--- last lines of the worker's log ({log}) ---")
            with contextlib.suppress(OSError):
                print("\n".join(log.read_text(errors="replace").splitlines()[-30:]))
            raise
    texts, verdicts = [], []
    for run in runs:
        text, met = report(run, args.target_mb)
        texts.append(text)
        verdicts.append(met)
    body = "\n\n".join(
        [
            f"`celery -A worker.app worker --loglevel INFO --concurrency {args.concurrency}` "
            f"({args.concurrency} pool child(ren)), "
            f"private redis-server, MNIST from `{mnist_dir()}`; runs one after the other in the "
            f"same worker, sampled every {args.interval} s. MB = 2^20 bytes.",
            *texts,
        ]
    )
    print(f"\n{body}")
    if not args.no_record:
        record("Worker memory: the Celery worker training on all of MNIST", body,
               packages=("celery", "redis"))  # fmt: skip
    return bool(verdicts) and all(verdicts)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
