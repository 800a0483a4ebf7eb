"""API memory under hostile requests (issue 10). Targets: at most +300 MB over the
API's resting RSS while 8 hostile uploads run at once; at most +100 MB while several
connections send headers that never end.

Starts a private ``redis-server`` and ``uvicorn api.main:app`` exactly as compose
runs it (no flags beyond host and port), on loopback. After one ordinary upload (so
the decoding code is loaded), each phase resets the API's peak (``VmHWM``, through
``clear_refs``), then:

- **uploads**: 8 concurrent ``POST /predict/image`` of one kind of file from
  ``bench/hostile.py``: a 4096x4096 16-bit RGBA PNG (within the limits: decoded), a
  1 x 16,777,216 8-bit grey PNG, the same in 16-bit RGBA, a 30000x30000 "bomb";
  then 8 of them mixed. Each phase records the answers, the peak (VmHWM) above rest,
  and the slowest ``GET /livez`` sent every 0.1 s meanwhile.
- **headers**: ``--connections`` connections each send one request whose header never
  ends, 64 KB at a time, for ``--seconds``; records how each ended and the peak.

Then SIGTERM to uvicorn and Redis, whatever happened.

    .venv/bin/python -m bench.api_memory
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from bench import hostile, procs
from bench.common import record, table
from bench.procs import hwm_mb, redis_server, reset_peak, rss_mb, service_env

UPLOAD_TARGET_MB = 300.0
HEADER_TARGET_MB = 100.0


@contextlib.contextmanager
def uvicorn(
    redis_url: str, root: Path, settings: Mapping[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str, int]]:
    """``uvicorn api.main:app`` as compose runs it, logging warnings only; ``settings``
    are extra environment variables."""
    env = service_env(redis_url, root / "models", LOG_LEVEL="WARNING", **(settings or {}))
    with procs.uvicorn(env, root) as (proc, port):
        yield proc, f"http://127.0.0.1:{port}", port


def ordinary_png() -> bytes:
    """A dark bar on white paper: a '1' as a phone photo of a page might show it."""
    image = Image.new("L", (600, 400), 255)
    image.paste(0, (280, 60, 320, 340))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class Peak:
    """The API's peak RSS during a phase: VmHWM reset at the start, read at the end,
    and the slowest /livez answered meanwhile."""

    def __init__(self, pid: int, url: str) -> None:
        self.pid, self.url = pid, url
        self.rest = 0.0
        self.peak = 0.0
        self.livez_max = 0.0
        self._done = threading.Event()

    def _probe(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._done.wait(0.1):
                started = time.perf_counter()
                with contextlib.suppress(httpx.HTTPError):
                    client.get(f"{self.url}/livez")
                self.livez_max = max(self.livez_max, time.perf_counter() - started)

    def __enter__(self) -> Peak:
        time.sleep(0.5)
        self.rest = rss_mb(self.pid) or 0.0
        if not reset_peak(self.pid):
            raise RuntimeError("cannot reset VmHWM (clear_refs): the peak would be stale")
        self._thread = threading.Thread(target=self._probe, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = hwm_mb(self.pid) or 0.0

    @property
    def growth(self) -> float:
        return self.peak - self.rest


def uploads(url: str, files: list[bytes]) -> Counter[str]:
    """All ``files`` to ``POST /predict/image`` at once; their status codes."""

    def send(data: bytes) -> str:
        try:
            with httpx.Client(timeout=120) as client:
                answer = client.post(f"{url}/predict/image", files={"file": ("x.png", data)})
            return str(answer.status_code)
        except httpx.HTTPError as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(len(files)) as pool:
        return Counter(pool.map(send, files))


def headers(port: int, connections: int, seconds: float) -> tuple[Counter[str], int]:
    """``connections`` endless headers at once; how they ended and the bytes sent."""
    with ThreadPoolExecutor(connections) as pool:
        results = list(
            pool.map(lambda _: hostile.endless_header(port, seconds), range(connections))
        )
    return Counter(outcome for _, outcome in results), sum(sent for sent, _ in results)


HEADER = (
    "phase",
    "answers",
    "RSS at rest MB",
    "peak MB",
    "growth",
    "slowest /livez ms",
    "target",
)


def row(
    label: str, answers: Counter[str], peak: Peak, ok: bool, mb: Sequence[str] | None = None
) -> tuple[str, ...]:
    """A phase's row: the answers, the MB columns (here at rest, peak and growth; other
    benchmarks pass theirs), the slowest /livez and the verdict."""
    if mb is None:
        mb = (f"{peak.rest:.0f}", f"{peak.peak:.0f}", f"+{peak.growth:.0f}")
    answered = ", ".join(f"{k} x{v}" for k, v in sorted(answers.items()))
    return (label, answered, *mb, f"{peak.livez_max * 1e3:.0f}", "met" if ok else "**missed**")


def main(argv: Sequence[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=8, help="concurrent uploads per phase")
    parser.add_argument("--connections", type=int, default=8, help="endless-header connections")
    parser.add_argument("--seconds", type=float, default=10.0, help="each header's sending time")
    parser.add_argument("--no-record", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args(argv)
    print("making the hostile files ...", flush=True)
    kinds: dict[str, bytes] = {
        "4096x4096 16-bit RGBA PNG": hostile.square_rgba16(),
        "1 x 16,777,216 grey PNG": hostile.one_row_grey(),
        "1 x 16,777,216 16-bit RGBA PNG": hostile.one_row_rgba16(),
        "30000x30000 grey PNG (bomb)": hostile.bomb(),
    }
    n = args.uploads
    phases = [
        (f"{n} x {name} ({len(data) / 1024:,.0f} KB)", [data] * n) for name, data in kinds.items()
    ]
    phases.append((f"{n} mixed, of all four", [list(kinds.values())[i % 4] for i in range(n)]))
    rows, verdicts = [], []
    with tempfile.TemporaryDirectory(prefix="api-memory-") as tmp:
        root = Path(tmp)
        with redis_server(root) as redis_url, uvicorn(redis_url, root) as (proc, url, port):
            warm = httpx.post(f"{url}/predict/image", files={"file": ("a.png", ordinary_png())})
            print(f"ordinary upload: {warm.status_code} (no model yet: 503 after decoding)")
            start_rss = rss_mb(proc.pid) or 0.0
            for label, files in phases:
                with Peak(proc.pid, url) as peak:
                    statuses = uploads(url, files)
                verdicts.append(peak.growth <= UPLOAD_TARGET_MB)
                rows.append(row(label, statuses, peak, verdicts[-1]))
                print(rows[-1], flush=True)
            with Peak(proc.pid, url) as peak:
                outcomes, sent = headers(port, args.connections, args.seconds)
            verdicts.append(peak.growth <= HEADER_TARGET_MB)
            label = (
                f"{args.connections} endless headers for {args.seconds:.0f} s "
                f"({sent / 2**20:,.1f} MB sent in all)"
            )
            rows.append(row(label, outcomes, peak, verdicts[-1]))
            print(rows[-1], flush=True)
            time.sleep(1.0)
            end_rss = rss_mb(proc.pid) or 0.0
    body = "\n\n".join(
        [
            "`uvicorn api.main:app --host 127.0.0.1 --port <free>` (no other flags), "
            "private redis-server, no model; each row's peak is the API's VmHWM, reset "
            "at its start, against the RSS at rest just before it. Targets: +"
            f"{UPLOAD_TARGET_MB:.0f} MB for uploads, +{HEADER_TARGET_MB:.0f} MB for "
            "headers. MB = 2^20 bytes.",
            table(HEADER, rows),
            f"RSS after an ordinary upload {start_rss:.0f} MB, after all phases {end_rss:.0f} MB.",
        ]
    )
    print(f"\n{body}")
    if not args.no_record:
        packages = ("uvicorn", "h11", "pillow")
        record("API memory under hostile uploads and endless headers", body, packages=packages)
    return all(verdicts)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
