"""A MODEL_DIR written before the artifact store existed keeps working unchanged when
ARTIFACT_URI is unset: its model serves, its correction is found, its checkpoint
resumes (tests/fixtures/README.md says how the folder was made)."""

import shutil
import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from api.main import create_app
from shared.config import Settings
from shared.services import Services
from tests.procs import REPO

LEGACY = REPO / "tests" / "fixtures" / "legacy-model-dir"
MODEL = "3f1e2d4c-5b6a-4789-8abc-def012345678"
SHA256 = "caa6c3455dbfffa934fd90ebf3d4ad366366f57586a79d696e1d571f9ea8b030"
CORRECTION = "1524779a-3e9a-a269-2bbf-b01c089d319b"
JOB = uuid.UUID("a1b2c3d4-e5f6-4711-8899-aabbccddeeff")


def test_a_folder_written_by_the_earlier_code_serves_unchanged(
    settings: Settings, tmp_path: Path
) -> None:
    shutil.copytree(LEGACY, settings.model_dir)
    assert settings.artifact_uri is None and settings.feedback_dir is None
    with TestClient(create_app(settings)) as client:
        listed = client.get("/models").json()["items"]
        assert [(m["id"], m["sha256"]) for m in listed] == [(MODEL, SHA256)]
        answer = client.post("/predict", json={"pixels": [0] * 784, "model_id": MODEL})
        assert answer.status_code == 200 and answer.json()["model_id"] == MODEL
        download = client.get(f"/models/{MODEL}/download")
        assert download.content == (settings.model_dir / f"{MODEL}.npz").read_bytes()
        correction = client.get(f"/feedback/{CORRECTION}")
        assert correction.status_code == 200 and correction.json()["label"] == 1
        assert [c["id"] for c in client.get("/feedback").json()["items"]] == [CORRECTION]
    services = Services.connect(settings)
    state = services.checkpoints.load(JOB)  # a job checkpointed before the upgrade resumes
    assert state is not None and state.epoch == 2
    assert sorted(p.name for p in settings.model_dir.iterdir()) == sorted(
        p.name for p in LEGACY.iterdir()
    )  # nothing moved, nothing added
