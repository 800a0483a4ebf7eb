"""The private services a benchmark starts (redis-server, uvicorn, Celery workers) and what
it reads of them in /proc: one way to start, wait for and stop each, so that every
benchmark measures the processes exactly as compose runs them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from bench.common import REPO, mnist_dir

BIN = Path(sys.executable).parent


# /proc


def _status_kb(pid: int, field_name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def rss_mb(pid: int) -> float | None:
    kb = _status_kb(pid, "VmRSS")
    return kb / 1024 if kb is not None else None


def hwm_mb(pid: int) -> float | None:
    kb = _status_kb(pid, "VmHWM")
    return kb / 1024 if kb is not None else None


def pss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return sorted(set(found))


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: ``echo 5 > clear_refs``)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Poll ``check`` every 0.1 s until it is truthy; a refused connection counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, httpx.HTTPError):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not start in {timeout:.0f} s")


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True


def _live(port: int) -> bool:
    return httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200


def stop(proc: subprocess.Popen[bytes], name: str, timeout: float) -> None:
    """SIGTERM once; SIGKILL to its process group only if it outlives ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"{name} (pid {proc.pid}) still up {timeout:.0f} s after SIGTERM: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def spawn(argv: Sequence[str], env: dict[str, str] | None, log: Path) -> subprocess.Popen[bytes]:
    """``argv`` in the repo, in its own process group (so that stop can kill it whole),
    its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def service_env(redis_url: str, model_dir: Path, **settings: str) -> dict[str, str]:
    """This process's environment as the services see it in compose: no API_KEY (the
    benchmarks call without one), MNIST never downloaded (measure the data that is there);
    ``settings`` are more variables."""
    env = {k: v for k, v in os.environ.items() if k != "API_KEY"}
    env.update(
        REDIS_URL=redis_url,
        MODEL_DIR=str(model_dir),
        MNIST_DIR=str(mnist_dir()),
        MNIST_DOWNLOAD="false",
        **settings,
    )
    return env


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port, keeping nothing on disk; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (apt-get install redis-server)")
    port = free_port()
    proc = spawn([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", str(workdir)], None, Path(os.devnull))  # fmt: skip
    try:
        wait_for(lambda: proc.poll() is not None or _listening(port), "redis-server", 10)
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc, "redis-server", 10)


@contextlib.contextmanager
def uvicorn(
    env: dict[str, str], root: Path, app: str = "api.main:app", flags: Sequence[str] = ()
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``uvicorn <app>`` as compose runs it (plus ``flags``) on a free loopback port, its
    log in ``root/api.log``; yields it and its port once it answers (``/livez`` for the
    API, a connection for any other app)."""
    port = free_port()
    log = root / "api.log"
    proc = spawn([str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), *flags],
                 env, log)  # fmt: skip
    ready = _live if app == "api.main:app" else _listening
    try:
        wait_for(lambda: proc.poll() is not None or ready(port), "uvicorn")
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn did not start: {log.read_text()[-2000:]}")
        yield proc, port
    finally:
        stop(proc, "uvicorn", 15)


@contextlib.contextmanager
def celery_worker(env: dict[str, str], log: Path, *flags: str) -> Iterator[subprocess.Popen[bytes]]:
    """``celery -A worker.app worker --loglevel INFO`` as compose runs it (plus ``flags``)."""
    proc = spawn([str(BIN / "celery"), "-A", "worker.app", "worker", "--loglevel", "INFO", *flags],
                 env, log)  # fmt: skip
    try:
        yield proc
    finally:
        stop(proc, "celery worker", 60)
