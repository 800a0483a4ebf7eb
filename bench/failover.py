"""What a Redis failover costs (issue 20): seconds from ``kill -9`` of the primary to the
first successful write, and the share of ``/predict`` requests that failed meanwhile.

Target (issue 20, "Measured"): report the failover window, and no failed prediction
during it when the model is cached (target 0).

The stack, private, on loopback: tests/sentinel.py's topology (one primary, one replica,
three sentinels: the same ``redis-server``; ``--down-after-ms`` is Sentinel's
``down-after-milliseconds``), one ``celery -A worker.app worker`` and two ``uvicorn
api.main:app``, both told ``REDIS_SENTINELS``: API *a* with ``REDIS_MIN_REPLICAS=0``,
API *b* with ``REDIS_MIN_REPLICAS=1``. A model is trained and promoted first, so both
APIs hold it in memory.

Each round, while two client threads send ``POST /predict`` (one image) to each API
back to back, and writers repeat their write every 20 ms:

- *client write*: ``SET`` through the service's own Redis client (shared/redisdb/
  client.py: Sentinel, the API's retries);
- *API write*: ``PUT /aliases/bench`` on API *a* (no WAIT);
- *confirmed write*: the same on API *b* (WAIT for one replica: after the failover there
  is none until the killed server is back, so this includes its return);

``kill -9`` of the primary, then, once Sentinel has promoted the replica, the killed
server is started again (from its append-only file) and rejoins as a replica. Times are
from the kill (the moment the process is reaped) to the first success of a write sent
after it, for each writer; the
predictions counted are those sent between the kill and the first client write (the
window) and between the kill and the confirmed write (the whole disturbance).

Before the rounds, steady state: the latency of ``PUT /aliases/bench`` with and without
WAIT (medians of ``--writes`` each): what "kept twice" costs when all is well.

    .venv/bin/python -m bench.failover
    .venv/bin/python -m bench.failover --rounds 1 --no-record      # a quick look
"""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import load_mnist, record, table
from shared.config import Settings
from shared.redisdb.client import RedisTarget, connect
from tests.procs import free_port, service_env, start_api, start_worker, stop, wait_until
from tests.sentinel import Topology

PASSWORD = "bench-data"
SENTINEL_PASSWORD = "bench-sentinel"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--down-after-ms", type=int, default=2000)
    parser.add_argument("--writes", type=int, default=100, help="steady-state writes each")
    parser.add_argument("--no-record", action="store_true", help="print only")
    return parser.parse_args(argv)


@dataclass
class Stack:
    top: Topology
    a: httpx.Client  # REDIS_MIN_REPLICAS=0
    b: httpx.Client  # REDIS_MIN_REPLICAS=1
    target: RedisTarget
    model_id: str = ""


@contextmanager
def stack(root: Path, down_after_ms: int) -> Iterator[Stack]:
    top = Topology(
        root / "redis",
        password=PASSWORD,
        sentinel_password=SENTINEL_PASSWORD,
        persistent=True,
        down_after_ms=down_after_ms,
    )
    procs: list[Any] = []
    clients: list[httpx.Client] = []
    top.start()
    try:
        url = f"redis://:{PASSWORD}@127.0.0.1:1/0"  # the host is the sentinels' to say
        sentinels = ",".join(top.sentinel_addresses())
        common = {
            "REDIS_SENTINELS": sentinels,
            "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
            "BLAS_THREADS": "1",
        }
        for replicas in ("0", "1"):
            env = service_env(url, root / "models", REDIS_MIN_REPLICAS=replicas, **common)
            port = free_port()
            procs.append(start_api(env, root / f"api-{replicas}.log", port))
            clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60))
        log = root / "worker.log"
        procs.append(start_worker(env, log, "--concurrency", "1"))
        wait_until(lambda: "ready." in log.read_text(), 90, "the worker")
        settings = Settings(
            redis_url=url, redis_sentinels=sentinels, redis_sentinel_password=SENTINEL_PASSWORD
        )
        yield Stack(top, clients[0], clients[1], RedisTarget.of(settings))
    finally:
        for proc in reversed(procs):
            stop(proc)
        for client in clients:
            client.close()
        top.stop()


def ok(response: httpx.Response, status: int = 200) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


def train_and_promote(s: Stack) -> None:
    body = {"epochs": 2, "train_size": 2000, "minibatches": 20, "input_scaling": "unit"}
    job = ok(s.a.post("/jobs", json=body), 202)
    done = wait_until(
        lambda: (j := ok(s.a.get(f"/jobs/{job['id']}")))["status"] == "succeeded" and j,
        120,
        "the model",
        interval=0.2,
    )
    s.model_id = done["model_id"]
    ok(s.a.put("/aliases/production", json={"model_id": s.model_id}))


@dataclass
class Log:
    """(sent, answered, outcome) of every call, from several threads."""

    calls: list[tuple[float, float, int | str]] = field(default_factory=list)


class Loop:
    """A call repeated from a thread until stopped; every outcome logged."""

    def __init__(self, call: Any, pause: float) -> None:
        self.call, self.pause, self.log = call, pause, Log()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Loop:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                outcome = self.call()
            except Exception as exc:
                outcome = type(exc).__name__
            self.log.calls.append((sent, time.monotonic(), outcome))
            time.sleep(self.pause)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def first_success_after(self, moment: float) -> float | None:
        """When the first call sent after ``moment`` succeeded (one sent before may have
        been kept by the old primary, and answered just after it died)."""
        done = [end for sent, end, outcome in self.log.calls if sent >= moment and outcome == 200]
        return min(done) if done else None


def steady_writes(s: Stack, n: int) -> dict[str, float]:
    """Median ms of PUT /aliases/bench without and with WAIT, interleaved."""
    times: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(n):
        for name, http in (("a", s.a), ("b", s.b)):
            start = time.perf_counter()
            ok(http.put("/aliases/bench", json={"model_id": s.model_id}))
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


def one_round(s: Stack, pixels: list[int]) -> dict[str, Any]:
    body = {"pixels": pixels}
    client = connect(s.target)

    def client_write() -> int:
        client.set("bench-failover", str(time.monotonic()))
        return 200

    predictions = [
        Loop(lambda http=http: http.post("/predict", json=body).status_code, 0.0).start()
        for http in (s.a, s.a, s.b, s.b)
    ]
    alias = {"model_id": s.model_id}
    writers = {
        "client": Loop(client_write, 0.02).start(),
        "api": Loop(lambda: s.a.put("/aliases/bench", json=alias).status_code, 0.02).start(),
        "confirmed": Loop(lambda: s.b.put("/aliases/bench", json=alias).status_code, 0.02).start(),
    }
    try:
        time.sleep(1.0)  # everything flowing
        old = s.top.primary()
        old.stop(signal.SIGKILL)
        killed = time.monotonic()
        s.top.wait_failover(old)
        promoted = time.monotonic() - killed
        s.top.wait_ready()
        old.start()  # from its AOF; Sentinel demotes it, it resyncs
        wait_until(lambda: writers["confirmed"].first_success_after(killed), 120, "a WAIT")
        wait_until(lambda: writers["api"].first_success_after(killed), 60, "an API write")
        wait_until(lambda: writers["client"].first_success_after(killed), 60, "a write")
        s.top.wait_ready()  # whole again before the next round
    finally:
        for loop in [*predictions, *writers.values()]:
            loop.stop()
        client.close()
    first = {name: loop.first_success_after(killed) for name, loop in writers.items()}
    calls = [c for loop in predictions for c in loop.log.calls]

    def window(end: float) -> tuple[int, int, list[float]]:
        sent = [c for c in calls if killed <= c[0] <= end]
        failed = sum(1 for c in sent if c[2] != 200)
        return len(sent), failed, [1000 * (c[1] - c[0]) for c in sent]

    assert all(first.values())
    n, failed, latency = window(first["client"])  # type: ignore[arg-type]
    n_all, failed_all, _ = window(first["confirmed"])  # type: ignore[arg-type]
    latency.sort()
    return {
        "promoted": promoted,
        "client": first["client"] - killed,  # type: ignore[operator]
        "api": first["api"] - killed,  # type: ignore[operator]
        "confirmed": first["confirmed"] - killed,  # type: ignore[operator]
        "predictions": n,
        "failed": failed,
        "p50": statistics.median(latency) if latency else 0.0,
        "max": latency[-1] if latency else 0.0,
        "predictions_all": n_all,
        "failed_all": failed_all,
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    pixels = [int(p) for p in load_mnist().test_images[0].ravel()]
    with (
        tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp,
        stack(Path(tmp), args.down_after_ms) as s,
    ):
        train_and_promote(s)
        for http in (s.a, s.b):  # the model in both APIs' memory
            ok(http.post("/predict", json={"pixels": pixels}))
        steady = steady_writes(s, args.writes)
        print(f"steady PUT /aliases: {steady['a']:.2f} ms, with WAIT {steady['b']:.2f} ms")
        rounds = []
        for n in range(args.rounds):
            result = one_round(s, pixels)
            rounds.append(result)
            print(
                f"round {n + 1}: promoted {result['promoted']:.2f} s, first write "
                f"{result['client']:.2f} s (API {result['api']:.2f} s, confirmed "
                f"{result['confirmed']:.2f} s); predictions {result['failed']} of "
                f"{result['predictions']} failed",
                flush=True,
            )
    rows = [
        (
            n + 1,
            f"{r['promoted']:.2f}",
            f"{r['client']:.2f}",
            f"{r['api']:.2f}",
            f"{r['confirmed']:.2f}",
            f"{r['failed']} of {r['predictions']}",
            f"{r['p50']:.1f} / {r['max']:.0f}",
            f"{r['failed_all']} of {r['predictions_all']}",
        )
        for n, r in enumerate(rounds)
    ]

    def med(key: str) -> str:
        return f"{statistics.median(r[key] for r in rounds):.2f}"

    rows.append(
        (
            "median",
            med("promoted"),
            med("client"),
            med("api"),
            med("confirmed"),
            f"{sum(r['failed'] for r in rounds)} of {sum(r['predictions'] for r in rounds)}",
            "",
            f"{sum(r['failed_all'] for r in rounds)} of "
            f"{sum(r['predictions_all'] for r in rounds)}",
        )
    )
    header = (
        "round",
        "kill → promoted s",
        "kill → first write s (client)",
        "kill → first API write s",
        "kill → first confirmed write s (with the old primary's return)",
        "predictions failed in the window",
        "their latency ms p50 / max",
        "predictions failed until the confirmed write",
    )
    body = (
        f"Sentinel down-after-milliseconds {args.down_after_ms}; failover-timeout 4000; "
        f"{args.rounds} round(s); 4 prediction clients (2 per API), 3 writers every 20 ms.\n\n"
        f"Steady state, `PUT /aliases/bench` median of {args.writes}: **{steady['a']:.2f} ms** "
        f"without WAIT, **{steady['b']:.2f} ms** with `REDIS_MIN_REPLICAS=1`.\n\n"
        + table(header, rows)
    )
    print()
    print(body)
    if not args.no_record:
        record("Redis failover", body, packages=("redis", "celery", "kombu"))


if __name__ == "__main__":
    main()
