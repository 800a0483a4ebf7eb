"""The README's no-Docker quick start, run as a newcomer would: ``./scripts/dev``, then
the README's own shell blocks (the quick start, then the five most used calls),
verbatim but for the port."""

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.procs import REPO, free_port, mnist_dir, wait_until

pytestmark = pytest.mark.e2e


def readme_block(name: str) -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- {name}:begin -->\n```bash\n(.*?)```", readme, re.S)
    assert match, f"README lost its {name} block"
    return match.group(1)


@contextmanager
def scripts_dev(root: Path) -> Iterator[int]:
    """``./scripts/dev`` as a newcomer starts it in ``root`` (``./.venv`` beside, models
    and Redis under ``root``, its output in ``root/dev.log``), on a free port; yields the
    port once ready, and stops it with Ctrl-C (SIGINT) as they would."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "API_KEY")}
    env.update(
        PORT=str(port),
        VENV=sys.prefix,
        MODEL_DIR=str(root / "models"),
        MNIST_DIR=str(mnist_dir()),
        MNIST_DOWNLOAD="false",
    )
    log = root / "dev.log"
    dev = subprocess.Popen(
        [str(REPO / "scripts" / "dev")],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: answers_ready(port) or dev.poll() is not None, 60, "scripts/dev")
        assert dev.poll() is None, log.read_text()
        (root / ".venv").symlink_to(sys.prefix)
        yield port
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        dev.wait(30)


def answers_ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def in_bash(script: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """``script`` run as a reader's shell runs it (bash, stopping at the first failing
    command, MNIST_DIR set), in ``cwd``; asserted to succeed."""
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cwd,
        env={**os.environ, "MNIST_DIR": str(mnist_dir())},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_readme_quickstart_against_scripts_dev(tmp_path: Path) -> None:
    with scripts_dev(tmp_path) as port:
        blocks = readme_block("quickstart") + readme_block("calls")
        done = in_bash(blocks.replace("localhost:8000", f"127.0.0.1:{port}"), tmp_path, 180)
        lines = done.stdout.strip().splitlines()
        job, alias, prediction = (json.loads(line) for line in lines[:3])
        assert job["status"] == "succeeded" and job["epoch"] == 20
        assert alias["name"] == "production" and alias["model_id"] == job["id"]
        assert prediction["label"] == 7 and prediction["alias"] == "production"
        assert prediction["model_id"] == job["id"]
        gated, models, batch, production, ready = (json.loads(line) for line in lines[3:])
        assert gated["status"] == "queued" and gated["id"] != job["id"]
        assert job["id"] in [m["id"] for m in models["items"]]
        assert len(batch["labels"]) == 2 and batch["model_id"] == job["id"]
        assert production["history"][-1]["reason"] == "my first model"
        assert ready["status"] == "ok" and ready["serving"]["alias"] == "production"
    assert not answers_ready(port), "scripts/dev left the API running"
    # the registry stayed with the models, out of the checkout
    assert list((tmp_path / "redis").iterdir()), "no Redis data beside MODEL_DIR"
    log = (tmp_path / "dev.log").read_text()
    redis_port = re.search(r"redis://127\.0\.0\.1:(\d+)/0", log)
    assert redis_port, log
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{redis_port.group(1)}", timeout=1)
