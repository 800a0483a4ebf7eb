"""``./scripts/dev`` stops everything it started, whatever signal stops it.

A Ctrl-C in a terminal signals the whole foreground process group, but a SIGINT or a
SIGTERM sent to the script's pid alone (a process manager, ``kill``, an IDE's stop
button) reached only bash, which left Celery, uvicorn and redis-server running. Here
the script runs as it would for a person (its own ``.venv``, a free port, data in a
temporary folder), only its pid is signalled, and every process below it must be gone.
"""

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.procs import BIN, REPO, _live, free_port, mnist_dir, wait_until

pytestmark = pytest.mark.e2e

SCRIPT = REPO / "scripts" / "dev"


def children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> dict[int, str]:
    """The processes below ``pid``, with their command lines."""
    tree, found, todo = children(), {}, [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            try:
                found[child] = (Path(f"/proc/{child}/cmdline").read_bytes()).replace(b"\0", b" ")
            except OSError:
                continue
            todo.append(child)
    return {p: cmd.decode(errors="replace") for p, cmd in found.items()}


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited process its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_script_alone_stops_all_it_started(
    sig: signal.Signals, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "API_KEY")}
    env.update(
        VENV=str(BIN.parent),  # the checkout's .venv, already installed
        HOST="127.0.0.1",
        PORT=str(port),
        MODEL_DIR=str(tmp_path / "data" / "models"),
        REDIS_DIR=str(tmp_path / "data" / "redis"),
        MNIST_DIR=str(mnist_dir()),
        MNIST_DOWNLOAD="false",
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "dev.log"
    script = subprocess.Popen(
        [str(SCRIPT)],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # no terminal: nothing but our kill reaches its children
    )
    started: dict[int, str] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _live(url) or script.poll() is not None, 60, "the API's /livez")
        assert script.poll() is None, log.read_text()
        wait_until(lambda: " ready." in log.read_text(), 60, "the Celery worker")

        started = descendants(script.pid)
        commands = list(started.values())
        for program in ("celery", "uvicorn", "redis-server"):
            assert any(program in cmd for cmd in commands), commands
        # the worker's training process too: a child of the Celery worker
        assert sum("celery" in cmd for cmd in commands) >= 2, commands

        os.kill(script.pid, sig)  # the script alone, not its process group
        assert script.wait(60) == 128 + sig
        wait_until(lambda: not any(running(pid) for pid in started), 30, "its processes to exit")

        text = log.read_text()
        order = [
            text.find(f"dev: stopping the {name} (pid ")
            for name in ("worker", "API", "redis-server")
        ]
        assert -1 < order[0] < order[1] < order[2], text
        for name in ("worker", "API", "redis-server"):
            assert text.count(f"dev: stopping the {name} ") == 1, text  # one signal each
        assert "Warm shutdown" in text  # Celery stopped the orderly way, not killed
        assert "Finished server process" in text  # so did uvicorn
    finally:
        if script.poll() is None:
            script.kill()
            script.wait(10)
        for pid in started:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
