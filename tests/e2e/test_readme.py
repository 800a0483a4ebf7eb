"""The README's no-Docker quick start, run as a newcomer would: ``./scripts/dev``, then
the README's own shell blocks (the quick start, then the five most used calls),
verbatim but for the port."""

import json
import os
import re
import signal
import subprocess
import sys
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


def test_readme_quickstart_against_scripts_dev(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "API_KEY")}
    env.update(
        PORT=str(port),
        VENV=sys.prefix,
        MODEL_DIR=str(tmp_path / "models"),
        MNIST_DIR=str(mnist_dir()),
        MNIST_DOWNLOAD="false",
    )
    dev = subprocess.Popen(
        [str(REPO / "scripts" / "dev")],
        env=env,
        stdout=(tmp_path / "dev.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: _ready(port) or dev.poll() is not None, 60, "scripts/dev")
        assert dev.poll() is None, (tmp_path / "dev.log").read_text()
        (tmp_path / ".venv").symlink_to(sys.prefix)
        blocks = readme_block("quickstart") + readme_block("calls")
        script = "set -euo pipefail\n" + blocks.replace("localhost:8000", f"127.0.0.1:{port}")
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env={**os.environ, "MNIST_DIR": str(mnist_dir())},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
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
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        dev.wait(30)
    assert not _ready(port), "scripts/dev left the API running"
    # the registry stayed with the models, out of the checkout
    assert list((tmp_path / "redis").iterdir()), "no Redis data beside MODEL_DIR"
    log = (tmp_path / "dev.log").read_text()
    redis_port = re.search(r"redis://127\.0\.0\.1:(\d+)/0", log)
    assert redis_port, log
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{redis_port.group(1)}", timeout=1)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
