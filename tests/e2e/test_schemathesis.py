"""Schemathesis sweeps the service's own OpenAPI document against a real uvicorn:
no 5xx anywhere, invalid data rejected, responses as documented."""

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from shared.artifacts.local import LocalStore
from shared.registry.files import ModelFiles
from tests import models
from tests.procs import BIN, free_port, redis_server, service_env, start_api, stop

pytestmark = pytest.mark.e2e

CHECKS = ",".join(
    [
        "not_a_server_error",
        "negative_data_rejection",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def plant_model(model_dir: Path) -> None:
    """A stored model, registered by the API at start-up, so /predict can answer 200."""
    model_id = uuid.uuid4()
    ModelFiles(LocalStore(model_dir)).save(model_id, models.weights(), models.meta(model_id))


def test_openapi_sweep(tmp_path: Path) -> None:
    st = shutil.which("st", path=str(BIN))
    assert st, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    plant_model(tmp_path / "models")
    with redis_server(tmp_path / "redis") as redis_url:
        # The body limit has its own test; here it would turn fuzzed oversize arrays into 413s.
        env = service_env(
            redis_url, tmp_path / "models", MAX_QUEUED_JOBS="100000", MAX_BODY_BYTES="67108864"
        )
        port = free_port()
        api = start_api(env, tmp_path / "api.log", port)
        try:
            done = subprocess.run(
                [
                    st,
                    "run",
                    f"http://127.0.0.1:{port}/openapi.json",
                    "--checks",
                    CHECKS,
                    "--max-examples",
                    "3",
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--seed",
                    "1",
                    "--no-color",
                    "--generation-database",
                    "none",
                    "--request-timeout",
                    "10",
                    # The event streams of the jobs and sweeps it creates never end (no
                    # worker runs here): each would be read until the timeout, 85 of the
                    # run's 100 s. Their 404s and 422s are tested in test_events.py and
                    # tests/api/test_sweeps.py.
                    "--exclude-path-regex",
                    "/events$",
                ],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=400,
            )
        finally:
            stop(api)
    assert done.returncode == 0, done.stdout[-6000:]
    assert "No issues found" in done.stdout or " passed" in done.stdout
