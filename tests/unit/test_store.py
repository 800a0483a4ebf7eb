"""Model files in a local artifact store: atomic, checksummed, never unpickled."""

import hashlib
import io
import json
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from shared.artifacts.local import LocalStore
from shared.ml import mlp
from shared.registry.files import ModelFileError, ModelFiles
from shared.schemas.common import utcnow
from shared.schemas.models import ModelMeta
from shared.schemas.params import TrainParams

HIDDEN = 5


def weights(seed: int = 0) -> mlp.Weights:
    return mlp.init_weights(784, HIDDEN, 10, np.random.default_rng(seed), np.float32)


def meta(input_scale: float = 1.0) -> ModelMeta:
    return ModelMeta(
        created_at=utcnow(),
        job_id=uuid.uuid4(),
        params=TrainParams(n_hidden=HIDDEN),
        train_accuracy=0.5,
        test_accuracy=None,
        input_scale=input_scale,
    )


def test_save_then_load_round_trip(tmp_path: Path) -> None:
    store = ModelFiles(LocalStore(tmp_path))
    model_id = uuid.uuid4()
    saved = meta()
    digest, size = store.save(model_id, weights(), saved)
    model = store.load(model_id, expected_sha256=digest)
    assert model.sha256 == digest and model.size_bytes == size
    assert model.meta == saved
    for a, b in zip(model.weights.arrays(), weights().arrays(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert store.model_ids() == [model_id]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _rewrite_weight(path: Path) -> None:
    """A valid .npz whose zip CRCs are right but whose weights changed."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["w1"][0, 0] += 1.0
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def test_changed_weight_fails_integrity_check(tmp_path: Path) -> None:
    store = ModelFiles(LocalStore(tmp_path))
    model_id = uuid.uuid4()
    digest, _ = store.save(model_id, weights(), meta())
    _rewrite_weight(tmp_path / f"{model_id}.npz")
    with pytest.raises(ModelFileError, match="integrity check failed"):
        store.load(model_id, expected_sha256=digest)
    with pytest.raises(ModelFileError, match="integrity check failed"):
        store.load(model_id)  # the sidecar checksum catches it too


def test_flipped_byte_fails_integrity_check(tmp_path: Path) -> None:
    store = ModelFiles(LocalStore(tmp_path))
    model_id = uuid.uuid4()
    digest, size = store.save(model_id, weights(), meta())
    path = tmp_path / f"{model_id}.npz"
    data = bytearray(path.read_bytes())
    data[size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="integrity check failed"):
        store.load(model_id, expected_sha256=digest)


def test_planted_pickle_is_refused(tmp_path: Path) -> None:
    """Even with a matching checksum, object arrays are never unpickled."""
    store = ModelFiles(LocalStore(tmp_path))
    model_id = uuid.uuid4()
    buffer = io.BytesIO()
    arrays = dict(zip(("w1", "b1", "w2", "b2"), weights().arrays(), strict=True))
    np.savez(buffer, meta=np.array([{"evil": True}], dtype=object), **arrays)
    payload = buffer.getvalue()
    (tmp_path / f"{model_id}.npz").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    (tmp_path / f"{model_id}.sha256").write_text(f"{digest}  {model_id}.npz\n")
    with pytest.raises(ModelFileError, match="Python objects"):
        store.load(model_id, expected_sha256=digest)


def test_file_without_checksum_is_incomplete(tmp_path: Path) -> None:
    """A crash after the model's rename but before its checksum: not a model yet."""
    store = ModelFiles(LocalStore(tmp_path))
    model_id = uuid.uuid4()
    store.save(model_id, weights(), meta())
    (tmp_path / f"{model_id}.sha256").unlink()
    assert store.model_ids() == []
    with pytest.raises(ModelFileError, match="no checksum"):
        store.load(model_id)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="missing"):
        ModelFiles(LocalStore(tmp_path)).load(uuid.uuid4(), expected_sha256="0" * 64)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "a\0b", "x" * 5000])
def test_paths_only_from_uuids(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        ModelFiles(LocalStore(tmp_path)).load(bad)  # type: ignore[arg-type]


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    stale = tmp_path / ".abc.npz.x.tmp"
    fresh = tmp_path / ".def.npz.y.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert store.remove_stale(older_than=3600) == 1
    assert not stale.exists() and fresh.exists()


def test_metadata_is_plain_json(tmp_path: Path) -> None:
    store = ModelFiles(LocalStore(tmp_path))
    model_id = uuid.uuid4()
    saved = meta(input_scale=0.5)
    store.save(model_id, weights(), saved)
    with np.load((tmp_path / f"{model_id}.npz"), allow_pickle=False) as npz:
        assert json.loads(str(npz["meta"])) == saved.model_dump(mode="json")
        assert npz["w1"].dtype == np.float32
