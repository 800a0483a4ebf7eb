"""``mnist aliases | promote | rollback | delete | export | import`` through the installed
entry point, against the real service."""

import hashlib
from pathlib import Path

import onnx
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_cli import mnist

pytestmark = pytest.mark.e2e

SMALL = {"epochs": 2, "train_size": 2000, "minibatches": 20, "input_scaling": "unit", "eta": 0.1}


def _model(stack: Stack, seed: int) -> str:
    job = stack.wait(stack.submit(**{**SMALL, "seed": seed}))
    assert job["status"] == "succeeded"
    return job["model_id"]


def test_promote_rollback_export_import_delete(stack: Stack, tmp_path: Path) -> None:
    a, b = _model(stack, 1), _model(stack, 2)
    done = mnist(stack, "promote", a, "--reason", "first")
    assert done.returncode == 0 and f"alias production -> model {a}" in done.stdout
    assert mnist(stack, "promote", b, "--alias", "production").returncode == 0
    listed = mnist(stack, "aliases")
    assert listed.returncode == 0 and "production" in listed.stdout and b in listed.stdout
    history = mnist(stack, "aliases", "production")
    assert (
        history.returncode == 0 and "first" in history.stdout and history.stdout.count("api") == 2
    )
    back = mnist(stack, "rollback")
    assert back.returncode == 0 and f"-> model {a} (rolled back)" in back.stdout
    assert stack.http.get("/aliases/production").json()["model_id"] == a

    npz, graph = tmp_path / "m.npz", tmp_path / "m.onnx"
    assert mnist(stack, "export", b, "-o", str(npz)).returncode == 0
    card = stack.http.get(f"/models/{b}").json()
    assert hashlib.sha256(npz.read_bytes()).hexdigest() == card["sha256"]
    assert mnist(stack, "export", b, "--format", "onnx", "-o", str(graph)).returncode == 0
    onnx.checker.check_model(onnx.load(str(graph)))

    refused = mnist(stack, "delete", a, "--yes")
    assert refused.returncode == 1 and "production" in refused.stderr
    assert mnist(stack, "delete", b, "--yes").returncode == 0
    assert stack.http.get(f"/models/{b}").status_code == 404
    imported = mnist(stack, "import", str(npz), "--source", "a test")
    assert imported.returncode == 0 and f"model {b} imported" in imported.stdout
    assert stack.http.get(f"/models/{b}").json()["imported_from"] == "a test"
    again = mnist(stack, "import", str(npz))
    assert again.returncode == 1 and "409" in again.stderr and "Traceback" not in again.stderr
    missing = mnist(stack, "import", str(tmp_path / "nope.npz"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    nothing = mnist(stack, "rollback", "nothing")
    assert nothing.returncode == 1 and "404" in nothing.stderr


def test_train_with_the_promotion_gate(stack: Stack) -> None:
    args = ["--epochs", "2", "--train-size", "2000", "--minibatches", "20", "--eta", "0.1"]
    done = mnist(
        stack, "train", *args, "--input-scaling", "unit", "--promote", "cli-gate", "--wait"
    )
    assert done.returncode == 0, done.stderr
    assert "promoted to cli-gate: the alias had no target" in done.stdout
    worse = mnist(
        stack,
        "train",
        "--epochs",
        "1",
        "--train-size",
        "1000",
        "--minibatches",
        "10",
        "--eta",
        "0.00001",
        "--promote",
        "cli-gate",
        "--min-gain",
        "0.01",
        "--wait",
    )
    assert worse.returncode == 0 and "not promoted to cli-gate" in worse.stdout
