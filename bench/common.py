"""What every benchmark shares: the data, the machine's description, the results file."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import shlex
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from shared import mnist  # noqa: E402

RESULTS = REPO / "BENCHMARKS.md"
LOAD_AT_START = os.getloadavg()
LOG_MARKER = "<!-- results: bench scripts append below this line -->"


def mnist_dir() -> Path:
    return Path(os.environ.get("MNIST_DIR", REPO.parent / "shared" / "mnist"))


def load_mnist() -> mnist.Mnist:
    return mnist.load(mnist_dir())


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def blas() -> str:
    try:
        from threadpoolctl import threadpool_info

        libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        return ", ".join(
            f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})" for i in libs
        )
    except Exception:
        return "unknown"


def versions(*packages: str) -> str:
    found = [f"Python {platform.python_version()}"]
    for name in ("numpy", *packages):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(found)


def machine() -> str:
    start = " ".join(f"{x:.2f}" for x in LOAD_AT_START)
    end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} "
        f"{platform.release()}; load average (1/5/15 min) at start {start}, at end {end}"
    )


def command() -> str:
    """How this script was started, relative to the repo root."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:  # python -m bench.x
        argv = ["-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]]
    else:
        argv = [str(Path(sys.argv[0]).resolve().relative_to(REPO)), *sys.argv[1:]]
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", *argv])


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (also readable as plain text on a terminal)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def record(title: str, body: str, packages: Sequence[str] = ()) -> None:
    """Append one result, with machine, versions and the command, to BENCHMARKS.md."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    entry = (
        f"\n### {title} ({when})\n\n"
        f"- command: `{command()}`\n"
        f"- machine: {machine()}\n"
        f"- versions: {versions(*packages)}; BLAS {blas()}\n\n"
        f"{body.strip()}\n"
    )
    text = RESULTS.read_text() if RESULTS.exists() else f"# Benchmarks\n\n{LOG_MARKER}\n"
    if LOG_MARKER not in text:
        text += f"\n{LOG_MARKER}\n"
    RESULTS.write_text(text.rstrip("\n") + "\n" + entry)
    print(f"\nappended to {RESULTS.relative_to(REPO)}")
