"""The model registry against a real (private) redis-server."""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from shared.artifacts.local import LocalStore
from shared.ml import mlp
from shared.redisdb.keys import Keys
from shared.registry.aliases import Aliases
from shared.registry.files import ModelFiles
from shared.registry.service import Models
from shared.registry.store import ModelRegistry
from shared.schemas.models import ModelInfo, ModelMeta
from shared.schemas.params import TrainParams
from tests.unit.test_model_index import default_serving

HIDDEN = 3


def _model(store: ModelFiles, minutes_ago: int) -> uuid.UUID:
    model_id = uuid.uuid4()
    created = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    weights = mlp.init_weights(784, HIDDEN, 10, np.random.default_rng(0), np.float32)
    meta = ModelMeta(
        created_at=created,
        job_id=model_id,
        params=TrainParams(n_hidden=HIDDEN),
        train_accuracy=0.9,
        test_accuracy=0.8,
        input_scale=1.0,
    )
    store.save(model_id, weights, meta)
    return model_id


def test_rebuild_from_files(
    registry: ModelRegistry, redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    """Redis lost its data: the folder alone re-creates the index, newest first."""
    store = ModelFiles(LocalStore(tmp_path))
    models = Models(registry, Aliases(registry), store)
    older, newer = _model(store, 10), _model(store, 1)
    broken = _model(store, 0)
    (tmp_path / f"{broken}.npz").write_bytes(b"garbage")
    assert models.rebuild() == (2, 0)
    assert default_serving(redis_url, keys).model_id == newer
    items, total = registry.list_models(0, 10)
    assert total == 2 and [m.id for m in items] == [newer, older]
    info = registry.get_model(older)
    assert isinstance(info, ModelInfo) and info.sha256 == store.recorded_sha256(older)
    assert registry.get_model(broken) is None
    assert models.rebuild() == (0, 0)  # idempotent
