"""API memory under hostile model imports (issue 17, point 2). Target: at most +150 MB
over the API's resting RSS while four hostile imports run at once, and the memory given
back once they are refused.

Before the checks, a 978 KB ``.npz`` whose member inflates to ~1 GB took the API to
1.09 GB, a 4 MB one to 5.1 GB, four at once to 3.95 GB, and the memory stayed taken.

Starts a private ``redis-server`` and ``uvicorn api.main:app`` as compose runs it, on
loopback, with ``MAX_BODY_BYTES`` at 8 MiB so that the 5 GB bomb (5.3 MB of file)
reaches the validator instead of the body limit (at the default 4 MiB it is a 413 at
the door). The files are bench/hostile_npz.py's. After one valid import and one
refused (the code paths loaded), each phase resets the API's peak (``VmHWM``, through
``clear_refs``) and sends ``--concurrency`` imports at once, ``--rounds`` times:

- a ``w1`` header declaring 10^12 rows (3 TB);
- a lying directory: ``w1`` declares 15 KB, its data inflates to 1 GB;
- the same, lying about its compressed size too (the read itself must stop);
- a ~1 GB bomb (an honest directory: ``w1`` declares 1,029 MB);
- a ~5 GB bomb (zip64 sizes: 5,096 MB);
- mixed: the 1 GB and 5 GB bombs, the 10^12-row header and the lying directory.

Each phase records the answers and its peak above the idle baseline (the RSS after
the warm-up). Then the RSS 2 s after the last phase, after each of as many rounds of
the mixed phase again as all phases sent, and 2 s after those: given back means all of
them within the target above idle, and the highest RSS of the second half of those
rounds at most 8 MB above that of the first (glibc keeps some freed request bodies in
its arenas, so the RSS at rest moves by tens of MB; a leak would climb with the
imports). SIGTERM to uvicorn and Redis, whatever happened.

    .venv/bin/python -m bench.hostile_imports
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench import hostile_npz
from bench.api_memory import Peak, row, uvicorn
from bench.common import record, table
from bench.procs import redis_server, rss_mb

TARGET_MB = 150.0
CLIMB_MB = 8.0
"""How much higher the RSS may reach in the second half of the extra rounds than in
the first: a leak of a fraction of the bodies would climb past it."""
BODY_LIMIT = 8 * 2**20
OCTETS = {"Content-Type": "application/octet-stream"}
HEADER = (
    "phase",
    "answers",
    "peak MB",
    "above idle",
    "RSS before the phase MB",
    "slowest /livez ms",
    "target",
)


def imports(url: str, files: list[bytes]) -> Counter[str]:
    """All ``files`` to ``POST /models`` at once; their status codes."""

    def send(data: bytes) -> str:
        try:
            with httpx.Client(timeout=300) as client:
                return str(client.post(f"{url}/models", content=data, headers=OCTETS).status_code)
        except httpx.HTTPError as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(len(files)) as pool:
        return Counter(pool.map(send, files))


def main(argv: Sequence[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=4, help="imports at once")
    parser.add_argument("--rounds", type=int, default=3, help="times each phase sends them")
    parser.add_argument("--no-record", action="store_true", help="write no results file")
    args = parser.parse_args(argv)
    print("making the hostile files ...", flush=True)
    makers: dict[str, Callable[[], bytes]] = {  # the largest bodies last
        "10^12-row header": hostile_npz.huge_header,
        "lying directory (1 GB behind 15 KB)": lambda: hostile_npz.liar(1024),
        "lying directory and compressed size": lambda: hostile_npz.liar(
            1024, lie_about_compressed=True
        ),
        "~1 GB bomb": lambda: hostile_npz.bomb(1),
        "~5 GB bomb": lambda: hostile_npz.bomb(5),
    }
    kinds = {name: make() for name, make in makers.items()}
    n = args.concurrency
    phases = [
        (f"{n} x {name} ({len(data) / 1024:,.0f} KB)", [data] * n) for name, data in kinds.items()
    ]
    mixed = [
        kinds[name]
        for name in (
            "~1 GB bomb",
            "~5 GB bomb",
            "10^12-row header",
            "lying directory (1 GB behind 15 KB)",
        )
    ]
    phases.append(
        (
            f"{n} mixed: 1 GB and 5 GB bombs, lying directory, 10^12 rows",
            [mixed[i % 4] for i in range(n)],
        )
    )
    rows, verdicts = [], []
    with tempfile.TemporaryDirectory(prefix="hostile-imports-") as tmp:
        root = Path(tmp)
        settings = {"MAX_BODY_BYTES": str(BODY_LIMIT)}
        with redis_server(root) as redis_url, uvicorn(redis_url, root, settings) as (proc, url, _):
            warm = httpx.post(f"{url}/models", content=hostile_npz.valid(), headers=OCTETS)
            refused = httpx.post(f"{url}/models", content=kinds["~1 GB bomb"], headers=OCTETS)
            print(f"warm-up: a valid import {warm.status_code}, a bomb {refused.status_code}")
            if warm.status_code != 201:
                raise RuntimeError(f"a valid import failed: {warm.text}")
            time.sleep(1.0)
            idle = rss_mb(proc.pid) or 0.0
            for label, files in phases:
                statuses: Counter[str] = Counter()
                with Peak(proc.pid, url) as peak:
                    for _ in range(args.rounds):
                        statuses += imports(url, files)
                above = peak.peak - idle
                ok = above <= TARGET_MB and set(statuses) <= {"413", "422"}
                verdicts.append(ok)
                mb = (f"{peak.peak:.0f}", f"{above:+.0f}", f"{peak.rest:.0f}")
                rows.append(row(f"{label}, {args.rounds} rounds", statuses, peak, ok, mb))
                print(rows[-1], flush=True)
            time.sleep(2.0)
            after = rss_mb(proc.pid) or 0.0
            more, samples = len(phases) * args.rounds, []
            for _ in range(more):
                imports(url, mixed)
                samples.append(rss_mb(proc.pid) or 0.0)
            time.sleep(2.0)
            again = rss_mb(proc.pid) or 0.0
            listed = httpx.get(f"{url}/models").json()["total"]
    half = len(samples) // 2
    climb = max(samples[half:]) - max(samples[:half])
    given_back = max(after, again, *samples) - idle <= TARGET_MB and climb <= CLIMB_MB
    verdicts.append(given_back and listed == 1)
    body = "\n\n".join(
        [
            f"`uvicorn api.main:app --host 127.0.0.1 --port <free>` with `MAX_BODY_BYTES="
            f"{BODY_LIMIT}` (8 MiB: the 5 GB bomb is 5.3 MB of file), private redis-server, "
            "one valid model imported and a bomb refused first (the idle baseline is the RSS "
            f"1 s after). Each row: {n} imports at once, {args.rounds} times; its peak is the "
            "API's VmHWM, reset at its start, against the idle baseline. Target: +"
            f"{TARGET_MB:.0f} MB, and every answer a 413 or 422. MB = 2^20 bytes.",
            table(HEADER, rows),
            f"RSS idle {idle:.0f} MB; 2 s after the last phase {after:.0f} MB "
            f"({after - idle:+.0f} MB); then {more} more rounds of the mixed phase "
            f"({more * n} imports): RSS after each {min(samples):.0f}-{max(samples):.0f} MB, "
            f"its highest in the second half {climb:+.0f} MB against the first, "
            f"2 s after the last {again:.0f} MB ({again - idle:+.0f} MB). "
            + (
                "Given back: what stays is within the target and does not climb with "
                "the imports (glibc keeps some freed request bodies in its arenas)."
                if given_back
                else f"**Kept**: above the target at rest, or climbing by more than "
                f"{CLIMB_MB:.0f} MB."
            )
            + f" Models registered at the end: {listed} (the valid one).",
        ]
    )
    print(f"\n{body}")
    if not args.no_record:
        record("API memory under hostile model imports", body, packages=("uvicorn", "h11"))
    return all(verdicts)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
