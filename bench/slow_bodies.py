"""API memory and connection time under slow request bodies (issue 17, point 8).
Target: the API's peak at most +150 MB over its resting RSS during 150 slow bodies.

Starts a private ``redis-server`` and ``uvicorn api.main:app`` exactly as compose runs
it (no flags beyond host and port), on loopback, with one small model in ``MODEL_DIR``
so that a normal ``POST /predict`` answers 200. Each phase resets the API's peak
(``VmHWM``, through ``clear_refs``) and records the answers, the peak above the RSS
at rest just before, how long the connections were held (from connecting to the
server's answer or close), and what a normal one-image ``POST /predict`` sent every
0.5 s meanwhile got:

- **all but one byte**: ``--connections`` (150) connections ``POST /predict`` each
  declaring a body of ``MAX_BODY_BYTES`` (4 MiB), send all but its last byte as fast
  as the server takes it, then wait (at most ``--hold`` seconds).
- **trickle**: ``--tricklers`` (200) connections ``POST /predict`` each declaring a
  one-image body (about 3 KB: within every size limit) and sending one byte of it
  every ``--interval`` (2) seconds, for at most ``--hold`` seconds.
- **uvicorn alone**: what uvicorn's h11 protocol itself holds per connection while
  the app does not read: ``uvicorn bench.slow_bodies:unread_app`` (an ASGI app that
  waits without ever calling ``receive``), ``--connections`` connections each
  declaring 4 MiB and sending as fast as the server takes it, for 5 s.

Then SIGTERM to uvicorn and Redis, whatever happened.

    .venv/bin/python -m bench.slow_bodies
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from bench import procs
from bench.common import record, table
from bench.procs import hwm_mb, redis_server, reset_peak, rss_mb, service_env

TARGET_MB = 150.0
MAX_BODY = 4 * 1024 * 1024  # MAX_BODY_BYTES's default: the largest body the API takes
CHUNK = 64 * 1024
ONE_IMAGE = json.dumps({"pixels": [0] * 784}).encode()
JSON = {"Content-Type": "application/json"}


async def unread_app(scope: dict, receive: object, send: object) -> None:
    """An ASGI app that never reads a body: what uvicorn buffers on its own."""
    if scope["type"] == "lifespan":
        return  # uvicorn carries on without lifespan support
    await asyncio.sleep(3600)


def write_model(model_dir: Path) -> None:
    """A small valid model with random weights, found by the API's rebuild at start."""
    from shared.artifacts import open_store
    from shared.ml import mlp
    from shared.registry.files import ModelFiles
    from shared.schemas.models import ModelMeta
    from shared.schemas.params import TrainParams

    model_id = uuid.uuid4()
    weights = mlp.init_weights(784, 5, 10, np.random.default_rng(0), np.float32)
    meta = ModelMeta(
        created_at=datetime.now(UTC),
        job_id=model_id,
        params=TrainParams(n_hidden=5, epochs=1),
        train_accuracy=0.9,
        test_accuracy=0.9,
        input_scale=1.0,
    )
    ModelFiles(open_store(f"file://{model_dir.absolute()}")).save(model_id, weights, meta)


def uvicorn(
    redis_url: str, root: Path, app: str = "api.main:app", flags: Sequence[str] = ()
) -> contextlib.AbstractContextManager[tuple[subprocess.Popen[bytes], int]]:
    """``uvicorn <app>`` as compose runs it (plus ``flags``), logging warnings only."""
    env = service_env(redis_url, root / "models", LOG_LEVEL="WARNING")
    return procs.uvicorn(env, root, app, flags)


@dataclass
class Outcome:
    answer: str  # the status code, or closed / reset / still open
    seconds: float  # from connecting to the answer (or to giving up)
    sent: int


async def _read_status(reader: asyncio.StreamReader) -> str:
    try:
        line = await reader.readline()
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    if not line:
        return "closed"
    parts = line.split()
    return parts[1].decode() if len(parts) > 1 else line.decode(errors="replace").strip()


async def _write(
    writer: asyncio.StreamWriter, data: memoryview, answer: asyncio.Task[str], until: float
) -> bool:
    """Send ``data``; False if the server answered (or dropped us) first, or if it has
    not taken the data by ``until`` (monotonic time)."""
    if answer.done():
        return False
    try:
        writer.write(data)
        drain = asyncio.ensure_future(writer.drain())
        done, _ = await asyncio.wait(
            {drain, answer},
            timeout=max(until - time.monotonic(), 0.01),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if drain not in done:
            drain.cancel()
            return False
        drain.result()
    except (ConnectionResetError, BrokenPipeError):
        return False
    return True


async def slow_body(
    port: int,
    declared: int,
    body: bytes,
    hold: float,
    interval: float | None = None,
    path: str = "/predict",
) -> Outcome:
    """One request declaring ``declared`` bytes that sends ``body`` (in 64 KiB pieces as
    fast as the server takes them, or one byte every ``interval`` seconds), then waits
    for the answer; everything within ``hold`` seconds of connecting."""
    started = time.monotonic()
    sent = 0
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return Outcome(type(exc).__name__, time.monotonic() - started, 0)
    answer = asyncio.create_task(_read_status(reader))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    try:
        step = 1 if interval else CHUNK
        view = memoryview(body)  # pieces without copies: 150 x 4 MiB add up
        pieces = [memoryview(head)] + [view[i : i + step] for i in range(0, len(body), step)]
        for n, piece in enumerate(pieces):
            out_of_time = time.monotonic() > started + hold
            if out_of_time or not await _write(writer, piece, answer, started + hold):
                break
            sent += len(piece) if n else 0
            if interval and n:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(answer), interval)
        left = hold - (time.monotonic() - started)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(answer), max(left, 0.01))
        result = answer.result() if answer.done() else "still open"
        return Outcome(result, time.monotonic() - started, sent)
    finally:
        answer.cancel()
        writer.transport.abort()  # a close would wait for unsent bytes the server never takes


async def probe(url: str, stop_at: asyncio.Event, every: float = 0.5) -> Counter[str]:
    """A normal one-image ``POST /predict`` every ``every`` seconds until ``stop_at``."""
    answers: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while not stop_at.is_set():
            try:
                response = await client.post("/predict", content=ONE_IMAGE, headers=JSON)
                answers[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                answers[type(exc).__name__] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_at.wait(), every)
    return answers


@dataclass
class Phase:
    label: str
    outcomes: list[Outcome] = field(default_factory=list)
    probes: Counter[str] = field(default_factory=Counter)
    rest: float = 0.0
    peak: float = 0.0
    after: float = 0.0

    @property
    def growth(self) -> float:
        return self.peak - self.rest


async def _run(
    port: int, requests: list[tuple[int, bytes, float | None]], hold: float, probe_url: str | None
) -> tuple[list[Outcome], Counter[str]]:
    done = asyncio.Event()
    probing = asyncio.create_task(probe(probe_url, done)) if probe_url else None
    outcomes = await asyncio.gather(
        *(slow_body(port, declared, body, hold, interval) for declared, body, interval in requests)
    )
    done.set()
    return list(outcomes), (await probing if probing else Counter())


def run_phase(
    label: str,
    pid: int,
    port: int,
    requests: list[tuple[int, bytes, float | None]],
    hold: float,
    probe_url: str | None,
) -> Phase:
    phase = Phase(label)
    time.sleep(0.5)
    phase.rest = rss_mb(pid) or 0.0
    if not reset_peak(pid):
        raise RuntimeError("cannot reset VmHWM (clear_refs): the peak would be stale")
    phase.outcomes, phase.probes = asyncio.run(_run(port, requests, hold, probe_url))
    phase.peak = hwm_mb(pid) or 0.0
    time.sleep(1.0)
    phase.after = rss_mb(pid) or 0.0
    return phase


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(counter.items())) or "-"


HEADER = (
    "phase",
    "answers",
    "held s (median / max)",
    "normal /predict meanwhile",
    "RSS at rest MB",
    "peak MB",
    "growth",
    "RSS after MB",
)


def row(phase: Phase) -> tuple[str, ...]:
    seconds = [o.seconds for o in phase.outcomes]
    return (
        phase.label,
        _counts(Counter(o.answer for o in phase.outcomes)),
        f"{statistics.median(seconds):.1f} / {max(seconds):.1f}",
        _counts(phase.probes),
        f"{phase.rest:.0f}",
        f"{phase.peak:.0f}",
        f"+{phase.growth:.0f}",
        f"{phase.after:.0f}",
    )


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so that the finally blocks run


def main(argv: Sequence[str] | None = None) -> bool:
    signal.signal(signal.SIGTERM, _terminated)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=150, help="all-but-one-byte bodies")
    parser.add_argument("--tricklers", type=int, default=200, help="trickling connections")
    parser.add_argument("--interval", type=float, default=2.0, help="s between a trickler's bytes")
    parser.add_argument("--hold", type=float, default=60.0, help="longest a connection waits")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args(argv)
    big = b'{"pixels": [' + b"0," * (MAX_BODY // 2)  # never valid JSON: it is cut short anyway
    big = big[: MAX_BODY - 1]
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="slow-bodies-") as tmp:
        root = Path(tmp)
        (root / "models").mkdir()
        write_model(root / "models")
        with redis_server(root) as redis_url:
            with uvicorn(redis_url, root) as (proc, port):
                url = f"http://127.0.0.1:{port}"
                warm = httpx.post(f"{url}/predict", content=ONE_IMAGE, headers=JSON)
                print(f"normal /predict: {warm.status_code}", flush=True)
                if warm.status_code != 200:
                    raise RuntimeError(f"no model served: {warm.text}")
                phases.append(run_phase(
                    f"{args.connections} x 4 MiB declared, all but one byte sent",
                    proc.pid, port, [(MAX_BODY, big, None)] * args.connections,
                    args.hold, url,
                ))  # fmt: skip
                print(row(phases[-1]), flush=True)
                trickle = (len(ONE_IMAGE), ONE_IMAGE[:-1], args.interval)
                phases.append(run_phase(
                    f"{args.tricklers} x one image ({len(ONE_IMAGE):,} B) at 1 byte / "
                    f"{args.interval:g} s",
                    proc.pid, port, [trickle] * args.tricklers, args.hold, url,
                ))  # fmt: skip
                print(row(phases[-1]), flush=True)
                api_log = (root / "api.log").read_text()
            unread = ("bench.slow_bodies:unread_app", ["--timeout-graceful-shutdown", "1"])
            with uvicorn(redis_url, root, *unread) as (proc, port):
                phases.append(run_phase(
                    f"uvicorn alone, app never reads: {args.connections} x 4 MiB sent as "
                    "fast as taken",
                    proc.pid, port, [(MAX_BODY, big, None)] * args.connections, 5.0, None,
                ))  # fmt: skip
                print(row(phases[-1]), flush=True)
    met = phases[0].growth <= TARGET_MB
    errors = api_log.count("Exception in ASGI application")
    body = "\n\n".join(
        [
            "`uvicorn api.main:app --host 127.0.0.1 --port <free>` (no other flags, default "
            "settings), private redis-server, one small model; each row's peak is the API's "
            'VmHWM, reset at its start, against the RSS at rest just before it; "held" is '
            "from connecting to the server's answer or close (or giving up after "
            f"{args.hold:g} s: `still open`). Target: +{TARGET_MB:.0f} MB during "
            f"{args.connections} slow bodies. MB = 2^20 bytes.",
            table(HEADER, [row(p) for p in phases]),
            f"Target {'met' if met else '**missed**'}: +{phases[0].growth:.0f} MB. "
            f"Tracebacks in the API's log: {errors}. Per connection, uvicorn alone held "
            f"{phases[2].growth * 1024 / max(args.connections, 1):.0f} KB while its app did "
            f"not read ({sum(o.sent for o in phases[2].outcomes) / 2**20:,.0f} MB sent in all, "
            "the rest waiting in the kernel's socket buffers or never sent).",
        ]
    )
    print(f"\n{body}")
    if not args.no_record:
        record("API memory under slow request bodies", body, packages=("uvicorn", "h11"))
    return met


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
