"""Start and stop the real processes the tests talk to: redis-server, celery, uvicorn."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll ``check`` until it returns a truthy value; bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_redis(
    workdir: Path, port: int, persistent: bool = False, extra: Sequence[str] = ()
) -> subprocess.Popen:
    """A private redis-server on loopback; returns once it answers. It keeps nothing on
    disk unless ``persistent`` (an AOF fsynced on every write, for restarts that keep
    the data); ``extra`` are more command-line settings."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: apt-get install redis-server")
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if persistent else "no",
            "--appendfsync",
            "always",
            "--dir",
            str(workdir),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_until(lambda: _connects(port), 10, f"redis-server on {port}")
    return proc


@contextmanager
def redis_server(
    workdir: Path, port: int | None = None, extra: Sequence[str] = ()
) -> Iterator[str]:
    """A private redis-server on a free loopback port; yields its URL."""
    port = port or free_port()
    proc = start_redis(workdir, port, extra=extra)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_worker(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen:
    """``celery -A worker.app worker`` exactly as compose runs it (plus test flags)."""
    return subprocess.Popen(
        [str(BIN / "celery"), "-A", "worker.app", "worker", "--loglevel", "INFO", *extra],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_api(env: dict[str, str], log: Path, port: int) -> subprocess.Popen:
    """``uvicorn api.main:app`` exactly as compose runs it, on a loopback port."""
    proc = subprocess.Popen(
        [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _live(url) or proc.poll() is not None, 30, "uvicorn /livez")
    if proc.poll() is not None:
        raise RuntimeError(f"uvicorn exited: {log.read_text()[-2000:]}")
    return proc


def _live(url: str) -> bool:
    try:
        return httpx.get(f"{url}/livez", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def service_env(redis_url: str, model_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY",)}
    env.update(
        REDIS_URL=redis_url,
        MODEL_DIR=str(model_dir),
        MNIST_DIR=str(mnist_dir()),
        MNIST_DOWNLOAD="false",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def mnist_dir() -> Path:
    return Path(os.environ.get("MNIST_DIR", REPO.parent / "shared" / "mnist"))
