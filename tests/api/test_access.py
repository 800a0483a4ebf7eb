"""The access table of docs/operations.md ("Access"), row by row, against every route the
app has (a route missing from the table fails the test, so a new one must be placed)."""

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.main import create_app
from shared.config import Settings

KEY = "s3cret"
ANY = str(uuid.uuid4())

WRITES = {
    ("POST", "/jobs"),
    ("POST", "/jobs/{job_id}/cancel"),
    ("POST", "/sweeps"),
    ("POST", "/sweeps/{sweep_id}/cancel"),
    ("PUT", "/aliases/{name}"),
    ("DELETE", "/aliases/{name}"),
    ("POST", "/aliases/{name}/rollback"),
    ("PUT", "/aliases/{name}/canary"),
    ("DELETE", "/aliases/{name}/canary"),
    ("POST", "/aliases/{name}/canary/promote"),
    ("DELETE", "/models/{model_id}"),
    ("POST", "/models"),
    ("POST", "/feedback"),
    ("DELETE", "/feedback/{feedback_id}"),
}
"""Need the key whenever API_KEY is set."""
PROTECTED_READS = {
    ("POST", "/predict"),
    ("POST", "/predict/image"),
    ("GET", "/models/{model_id}/download"),
    ("GET", "/models/{model_id}/onnx"),
    ("GET", "/feedback"),
    ("GET", "/feedback/stats"),
    ("GET", "/feedback/{feedback_id}"),
    ("GET", "/feedback/{feedback_id}.png"),
}
"""Need it with PROTECT_PREDICT."""
METRICS = {("GET", "/metrics")}
OPEN = {
    ("GET", "/jobs"),
    ("GET", "/jobs/{job_id}"),
    ("GET", "/jobs/{job_id}/events"),
    ("GET", "/jobs/{job_id}/feedback"),
    ("GET", "/sweeps"),
    ("GET", "/sweeps/{sweep_id}"),
    ("GET", "/sweeps/{sweep_id}/events"),
    ("GET", "/models"),
    ("GET", "/models/{model_id}"),
    ("GET", "/models/{model_id}/drift"),
    ("GET", "/aliases"),
    ("GET", "/aliases/{name}"),
    ("GET", "/aliases/{name}/canary"),
    ("GET", "/dataset/samples"),
    ("GET", "/dataset/test/{index}"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/"),
    ("GET", "/presets.json"),
    ("GET", "/favicon.ico"),
}


def _routes(client: TestClient) -> set[tuple[str, str]]:
    """Every operation of the API (what /openapi.json documents)."""
    paths = client.get("/openapi.json").json()["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item}


def _url(path: str) -> str:
    return (
        path.replace("{job_id}", ANY)
        .replace("{sweep_id}", ANY)
        .replace("{model_id}", ANY)
        .replace("{feedback_id}", ANY)
        .replace("{name}", "production")
        .replace("{index}", "0")
    )


@pytest.fixture
def locked(settings: Settings) -> Iterator[TestClient]:
    every = settings.model_copy(
        update={"api_key": SecretStr(KEY), "protect_predict": True, "protect_metrics": True}
    )
    with TestClient(create_app(every)) as client:
        yield client


@pytest.fixture
def keyed(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"api_key": SecretStr(KEY)}))) as client:
        yield client


def test_every_route_is_in_the_table(locked: TestClient) -> None:
    table = WRITES | PROTECTED_READS | METRICS | OPEN
    routes = _routes(locked)
    assert len(routes) > 30 and routes <= table, (
        f"routes missing from the access table: {sorted(routes - table)}"
    )


def test_with_everything_protected_only_the_open_rows_answer_without_a_key(
    locked: TestClient,
) -> None:
    for method, path in sorted(WRITES | PROTECTED_READS | METRICS):
        answer = locked.request(method, _url(path))
        assert answer.status_code == 401, (method, path, answer.status_code)
        assert answer.json()["detail"] == "missing or wrong API key"
    for method, path in sorted(OPEN - {("GET", "/jobs/{job_id}/events")}):
        assert locked.request(method, _url(path)).status_code != 401, (method, path)


def test_with_only_api_key_writes_need_it_and_reads_do_not(keyed: TestClient) -> None:
    for method, path in sorted(WRITES):
        assert keyed.request(method, _url(path)).status_code == 401, (method, path)
        with_key = keyed.request(method, _url(path), headers={"X-API-Key": KEY})
        assert with_key.status_code != 401, (method, path)
    for method, path in sorted(PROTECTED_READS | METRICS):
        assert keyed.request(method, _url(path)).status_code != 401, (method, path)
