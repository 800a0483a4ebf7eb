"""A writer killed between writing and renaming leaves no model behind, only a temp
file that start-up removes. The crash is real: a child process gets SIGKILL."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from shared.artifacts.local import LocalStore
from shared.files import write_atomic
from shared.registry.aliases import Aliases
from shared.registry.files import ModelFiles
from shared.registry.service import Models
from shared.registry.store import ModelRegistry
from tests.procs import REPO

CHILD = """
import os, sys, time, uuid
from pathlib import Path
import numpy as np
from shared.ml import mlp
from shared.schemas.models import ModelMeta
from shared.schemas.params import TrainParams
from shared.schemas.common import utcnow
from shared.artifacts.local import LocalStore
from shared.registry.files import ModelFiles

def hang(*args):  # stand in for the instant before the link or rename: the process dies here
    print("written", flush=True)
    time.sleep(60)

os.replace = os.link = hang
model_id = uuid.UUID(sys.argv[2])
weights = mlp.init_weights(784, 4, 10, np.random.default_rng(0), np.float32)
meta = ModelMeta(
    created_at=utcnow(),
    job_id=model_id,
    params=TrainParams(n_hidden=4),
    train_accuracy=None,
    test_accuracy=None,
    input_scale=1.0,
)
ModelFiles(LocalStore(Path(sys.argv[1]))).save(model_id, weights, meta)
"""


def test_killed_writer_leaves_no_model(tmp_path: Path, registry: ModelRegistry) -> None:
    model_id = uuid.uuid4()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(model_id)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "written"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)

    store = LocalStore(tmp_path)
    models = Models(registry, Aliases(registry), ModelFiles(store))
    leftovers = list(tmp_path.glob(".*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0
    assert not (tmp_path / f"{model_id}.npz").exists()
    assert models.files.model_ids() == [] and store.list() == []
    assert models.rebuild() == (0, 0) and registry.get_model(model_id) is None

    old = time.time() - 7200
    os.utime(leftovers[0], (old, old))
    assert store.remove_stale() == 1
    assert list(tmp_path.iterdir()) == []


def test_failed_write_removes_its_temp_file(tmp_path: Path) -> None:
    def broken(_: object) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "x.npz", broken)
    assert list(tmp_path.iterdir()) == []
