"""The service on an S3 artifact store (a real SeaweedFS), in-process over a real Redis:
a deletion leaves nothing in the bucket, the rebuild reconciles Redis with a listing of
the bucket both ways, a tampered object is refused like a tampered file, a cached model
serves with the store away, and a misconfigured store stops the process at start."""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from shared.config import Settings
from shared.registry.service import model_info
from shared.services import Misconfigured, Services
from tests import models
from tests.seaweed import ACCESS_KEY, SECRET_KEY, Seaweed


@pytest.fixture
def on_s3(
    settings: Settings, s3_server: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bucket = s3_server.create_bucket()
    yield settings.model_copy(
        update={
            "artifact_uri": f"s3://{bucket}/svc",
            "s3_endpoint_url": s3_server.endpoint_url,
            "s3_region": "us-east-1",
        }
    )


@pytest.fixture
def services(on_s3: Settings) -> Iterator[Services]:
    """What a worker or the API uses, over the tests' Redis and the bucket."""
    built = Services.connect(on_s3)
    yield built
    built.close()


@pytest.fixture
def api_host(on_s3: Settings, tmp_path: Path) -> Settings:
    """The API on a host of its own: the same bucket, its own model cache."""
    return on_s3.model_copy(update={"cache_dir": tmp_path / "api-cache"})


def listing(s3: Seaweed, settings: Settings) -> list[str]:
    bucket = str(settings.artifact_uri).removeprefix("s3://").split("/")[0]
    return sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", []))


def test_a_deletion_leaves_nothing_in_the_bucket(
    on_s3: Settings, s3_server: Seaweed, services: Services
) -> None:
    kept, gone = models.register(services.models), models.register(services.models)
    assert listing(s3_server, on_s3) == sorted(
        f"svc/{i}.{ext}" for i in (kept, gone) for ext in ("npz", "sha256")
    )
    with TestClient(create_app(on_s3)) as client:
        assert client.delete(f"/models/{gone}").status_code == 204
        correction = client.post("/feedback", json={"pixels": [9] * 784, "label": 3}).json()
        assert f"svc/feedback/{correction['id']}.json" in listing(s3_server, on_s3)
        assert client.delete(f"/feedback/{correction['id']}").status_code == 204
    assert listing(s3_server, on_s3) == [f"svc/{kept}.npz", f"svc/{kept}.sha256"]


def test_the_rebuild_reconciles_redis_with_the_bucket_both_ways(
    s3_server: Seaweed, services: Services
) -> None:
    a, b = models.register(services.models), models.register(services.models)
    services.redis.flushdb()  # Redis lost everything
    services.models.files.delete(b)  # and b's objects went behind its back
    stale = model_info(services.models.files.load(a)).model_copy(update={"id": b})
    services.registry.put_model(stale)  # an entry whose objects are gone
    assert services.models.rebuild() == (1, 1)  # a registered from the listing, b dropped
    assert services.registry.model_ids() == [a]


def test_a_tampered_object_is_refused_and_default_serving_moves_on(
    on_s3: Settings, s3_server: Seaweed, services: Services, api_host: Settings
) -> None:
    older = models.register(services.models)
    newer = models.register(services.models, seed=1)
    bucket = str(on_s3.artifact_uri).removeprefix("s3://").split("/")[0]
    other = services.models.files.read_verified(older)  # valid model bytes, not newer's
    s3_server.client().put_object(Bucket=bucket, Key=f"svc/{newer}.npz", Body=other)
    with TestClient(create_app(api_host)) as client:
        by_id = client.post("/predict", json={"pixels": [0] * 784, "model_id": str(newer)})
        assert by_id.status_code == 503 and "integrity check failed" in by_id.json()["detail"]
        default = client.post("/predict", json={"pixels": [0] * 784})
        assert default.status_code == 200 and default.json()["model_id"] == str(older)
        assert client.get(f"/models/{newer}").json()["broken"]
        assert client.get("/readyz").json()["status"] == "degraded"


def test_a_model_in_the_hosts_cache_serves_while_the_store_is_away(
    on_s3: Settings, s3_server: Seaweed, services: Services, api_host: Settings
) -> None:
    model_id = models.register(services.models)
    never_loaded = models.register(services.models, seed=2)
    sha256 = services.registry.get_model(model_id).sha256  # type: ignore[union-attr]
    body = {"pixels": [7] * 784, "model_id": str(model_id)}
    with TestClient(create_app(api_host)) as client:
        first = client.post("/predict", json=body)
        assert first.status_code == 200
    cached = api_host.cache_root / f"{sha256}.bin"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha256
    with s3_server.stopped(), TestClient(create_app(api_host)) as client:  # a restarted API
        again = client.post("/predict", json=body)
        assert again.status_code == 200 and again.json() == first.json()
        miss = client.post("/predict", json={**body, "model_id": str(never_loaded)})
        assert miss.status_code == 503 and miss.headers["Retry-After"]
        assert miss.json()["detail"] == "the model store is unavailable; try again shortly"
        assert client.get("/readyz").json()["store"] == "unavailable"


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            {"artifact_uri": "s3://no-such-bucket-here/x"},
            "bucket no-such-bucket-here does not exist",
        ),
        ({}, "wrong credentials for the object store"),
    ],
    ids=["missing-bucket", "wrong-credentials"],
)
def test_a_misconfigured_store_stops_the_process_with_one_line(
    on_s3: Settings, monkeypatch: pytest.MonkeyPatch, change: dict, line: str
) -> None:
    if not change:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(Misconfigured, match=line):
        create_app(on_s3.model_copy(update=change))
