"""What every benchmark shares: the data, the machine's description, the results files."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import itertools
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

from shared.data import mnist  # noqa: E402

# One file per run; BENCHMARKS.md (the standing) is updated by hand from these.
RESULTS_DIR = REPO / "bench" / "results"
LOAD_AT_START = os.getloadavg()


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


def _main_module() -> str | None:
    """``bench.x`` when started as ``python -m bench.x``, else None."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name).removesuffix(".__main__")
    return None


def command() -> str:
    """How this script was started, relative to the repo root."""
    module = _main_module()
    if module is not None:  # python -m bench.x
        argv = ["-m", module, *sys.argv[1:]]
    else:
        argv = [str(Path(sys.argv[0]).resolve().relative_to(REPO)), *sys.argv[1:]]
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", *argv])


def script_name() -> str:
    """The running benchmark's name for file names: ``worker-memory`` for bench.worker_memory."""
    module = _main_module()
    name = module.rsplit(".", 1)[-1] if module else Path(sys.argv[0]).stem
    return name.replace("_", "-") or "bench"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (also readable as plain text on a terminal)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def record(
    title: str, body: str, packages: Sequence[str] = (), directory: Path | None = None
) -> Path:
    """Write one result, with machine, versions and the command, to a new file.

    The file is ``bench/results/<UTC date-time to the second>-<script>.md``; an existing
    file is never overwritten (a second run in the same second gets ``-2``, ``-3``, ...).
    Its first line is a heading unique among the results files. Returns the path.
    """
    directory = RESULTS_DIR if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    stem = f"{now:%Y-%m-%d-%H%M%S}-{script_name()}"
    details = (
        f"- command: `{command()}`\n"
        f"- machine: {machine()}\n"
        f"- versions: {versions(*packages)}; BLAS {blas()}\n\n"
        f"{body.strip()}\n"
    )
    for n in itertools.count(1):
        path = directory / (f"{stem}.md" if n == 1 else f"{stem}-{n}.md")
        when = f"{now:%Y-%m-%d %H:%M:%S} UTC" + ("" if n == 1 else f", #{n}")
        try:
            with path.open("x", encoding="utf-8") as f:  # "x": fail rather than overwrite
                f.write(f"# {title} ({when})\n\n{details}")
        except FileExistsError:
            continue
        break
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"\nwrote {shown} (BENCHMARKS.md's table is updated by hand)")
    return path
