"""Hardening against a real stack (redis-server, uvicorn, celery worker): stale temp
files swept by a running worker, and odd inputs sent as raw bytes through uvicorn."""

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.artifacts.local import STALE_TEMP_SECONDS
from tests.e2e.conftest import Stack, running_stack
from tests.procs import wait_until
from tests.sse import collect

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("hardening")
    with running_stack(root, RECOVERY_INTERVAL_SECONDS="0.3") as stack:
        log = root / "worker.log"
        wait_until(lambda: log.exists() and " ready." in log.read_text(), 60, "worker ready")
        yield stack


def _temp_file(folder: Path, age: float) -> Path:
    """A temp file as shared.files.write_atomic names them, ``age`` seconds old."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{uuid.uuid4()}.npz.{uuid.uuid4().hex[:8]}.tmp"
    path.write_bytes(b"half a checkpoint")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_a_running_worker_sweeps_stale_temp_files(stack: Stack) -> None:
    """Made after the worker's start-up sweep: only its recovery passes can remove them."""
    stale = [
        _temp_file(stack.model_dir / "checkpoints", STALE_TEMP_SECONDS + 600),
        _temp_file(stack.model_dir, STALE_TEMP_SECONDS + 600),
    ]
    fresh = _temp_file(stack.model_dir / "checkpoints", 60)  # maybe a write in progress
    wait_until(lambda: not any(p.exists() for p in stale), 30, "stale temp files swept")
    time.sleep(1)  # three more recovery passes at 0.3 s
    assert fresh.exists()
    assert stack.workers[0].poll() is None  # the same worker, never restarted


def test_raw_inputs_through_uvicorn(stack: Stack) -> None:
    http = stack.http
    for body in (rb'{"epochs": "\ud800"}', rb'{"\udfff": 1}', b'{"x\\ud800": [1]}'):
        response = http.post("/jobs", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        response.content.decode("utf-8")
        assert response.json()["detail"]
    options = http.options("/jobs")
    assert options.status_code == 405 and options.headers["allow"] == "GET, POST"

    job_id = stack.submit(epochs=2, train_size=200, minibatches=2)
    assert stack.wait(job_id)["status"] == "succeeded"
    # raw header bytes: 0xB2 is "²" in Latin-1, which str.isdigit() takes and int() refuses
    for last_event_id in (b"\xb2", b"1" * 5000, b"9" * 23, "\u0661".encode()):
        seen = collect(http, f"/jobs/{job_id}/events", headers={"Last-Event-ID": last_event_id})  # type: ignore[dict-item]
        assert [(event, event_id) for event, _, event_id in seen] == [
            ("epoch", "1"),
            ("epoch", "2"),
            ("end", None),
        ], last_event_id
