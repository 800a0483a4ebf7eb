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

from shared.files import write_atomic
from shared.registry import ModelRegistry
from shared.store import ModelStore
from tests.procs import REPO

CHILD = """
import os, sys, time, uuid
from pathlib import Path
import numpy as np
from shared import mlp
from shared.schemas import ModelMeta, TrainParams, utcnow
from shared.store import ModelStore

def hang(*args):  # stand in for the instant before os.replace: the process dies here
    print("written", flush=True)
    time.sleep(60)

os.replace = hang
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
ModelStore(Path(sys.argv[1])).save(model_id, weights, meta)
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

    store = ModelStore(tmp_path)
    leftovers = list(tmp_path.glob(".*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0
    assert not store.path(model_id).exists()
    assert store.model_ids() == []
    assert registry.rebuild(store) == (0, 0) and registry.get_model(model_id) is None

    old = time.time() - 7200
    os.utime(leftovers[0], (old, old))
    assert store.remove_stale_temp_files() == 1
    assert list(tmp_path.iterdir()) == []


def test_failed_write_removes_its_temp_file(tmp_path: Path) -> None:
    def broken(_: object) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "x.npz", broken)
    assert list(tmp_path.iterdir()) == []
