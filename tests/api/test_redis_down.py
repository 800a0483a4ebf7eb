"""With Redis unreachable the API answers 503 quickly and hands out no job id."""

from pathlib import Path

from fastapi.testclient import TestClient

from api.main import create_app
from shared.config import Settings
from tests.procs import free_port


def test_redis_down_gives_503_with_retry_after(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(redis_url=f"redis://127.0.0.1:{port}/0", model_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        response = client.post("/jobs", json={"epochs": 1})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert "id" not in response.json() and "Redis" in response.json()["detail"]
        prediction = client.post("/predict", json={"pixels": [0] * 784})
        assert prediction.status_code == 503 and prediction.headers["retry-after"] == "5"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        assert ready.json()["detail"] == "redis unreachable"  # not its address
        for answer in (response, prediction, ready):
            assert str(port) not in answer.text and "127.0.0.1" not in answer.text
        assert client.get("/livez").status_code == 200
