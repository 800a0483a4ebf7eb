"""Corrections: files, the Redis index, rebuild, and fine-tuning data, against a real
(private) redis-server."""

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis

from shared.artifacts.local import LocalStore
from shared.feedback import finetune
from shared.feedback.corrections import Corrections, StoreFull
from shared.feedback.files import FeedbackFiles
from shared.jobs.store import JobStore
from shared.ml import mlp, training
from shared.redisdb.keys import Keys
from shared.schemas.feedback import CorruptCorrection, Source, make_file
from shared.schemas.jobs import Job
from shared.schemas.params import InputScaling, TrainParams

KEYS = Keys("test:")


def digit(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (28, 28)).astype(np.uint8)


@pytest.fixture
def corrections(raw_redis: redis.Redis, tmp_path: Path) -> Corrections:
    return Corrections.connect(raw_redis, KEYS, LocalStore(tmp_path / "feedback"), limit=5)


def path_of(corrections: Corrections, feedback_id: uuid.UUID) -> Path:
    """Where a local store keeps a correction (``<id>.json``)."""
    store = corrections.files.store
    assert isinstance(store, LocalStore)
    return store.root / f"{feedback_id}.json"


def test_add_is_a_file_and_an_index_entry(corrections: Corrections) -> None:
    record = make_file(digit(1), 3, Source.pixels, model_id=uuid.uuid4(), predicted=8)
    added = corrections.add(record)
    assert added.created and added.item.id == record.id
    assert path_of(corrections, record.id).exists()
    back = corrections.read(record.id)
    assert back is not None and np.array_equal(back.image(), digit(1))
    assert back.label == 3 and back.predicted == 8 and back.model_id == record.model_id
    assert corrections.index.get(record.id) == record.item()


def test_the_same_image_and_label_is_the_same_correction(corrections: Corrections) -> None:
    first = corrections.add(make_file(digit(1), 3, Source.pixels))
    again = corrections.add(make_file(digit(1), 3, Source.image, predicted=5))
    assert not again.created and again.item == first.item
    other_label = corrections.add(make_file(digit(1), 4, Source.pixels))
    assert other_label.created and other_label.item.id != first.item.id
    assert corrections.index.count() == 2


def test_the_limit_is_checked_and_the_rejected_file_removed(corrections: Corrections) -> None:
    for seed in range(5):
        corrections.add(make_file(digit(seed), seed, Source.pixels))
    late = make_file(digit(99), 1, Source.pixels)
    with pytest.raises(StoreFull):
        corrections.add(late)
    assert not corrections.files.exists(late.id)
    assert corrections.index.count() == 5
    # a correction already stored is still found when the store is full
    assert not corrections.add(make_file(digit(0), 0, Source.pixels)).created


def test_the_limit_holds_when_the_index_script_decides(corrections: Corrections) -> None:
    """Two writers past the pre-check: the Lua script is the one that says full."""
    for seed in range(5):
        assert corrections.index.add(make_file(digit(seed), 1, Source.pixels).item(), 5)
    assert corrections.index.add(make_file(digit(50), 1, Source.pixels).item(), 5) == "full"


def test_stats_list_and_delete(corrections: Corrections) -> None:
    a = corrections.add(make_file(digit(1), 3, Source.pixels, predicted=8)).item
    b = corrections.add(make_file(digit(2), 3, Source.pixels, predicted=8)).item
    c = corrections.add(make_file(digit(3), 7, Source.pixels)).item
    stats = corrections.index.stats()
    assert stats.total == 3
    assert stats.by_label["3"] == 2 and stats.by_label["7"] == 1 and stats.by_label["0"] == 0
    pairs = {(row.predicted, row.label): row.count for row in stats.by_prediction}
    assert pairs == {(8, 3): 2, (None, 7): 1}
    items, total = corrections.index.list(3, 0, 10)
    assert total == 2 and {i.id for i in items} == {a.id, b.id}
    items, total = corrections.index.list(None, 0, 2)
    assert total == 3 and [i.id for i in items] == [c.id, b.id]  # newest first

    assert corrections.delete(a.id)
    assert not corrections.files.exists(a.id) and corrections.index.get(a.id) is None
    assert not corrections.delete(a.id)
    pairs = {
        (row.predicted, row.label): row.count for row in corrections.index.stats().by_prediction
    }
    assert pairs == {(8, 3): 1, (None, 7): 1}


def test_a_changed_byte_is_found(corrections: Corrections) -> None:
    record = make_file(digit(1), 3, Source.pixels)
    corrections.add(record)
    path = path_of(corrections, record.id)
    data = json.loads(path.read_text())
    data["label"] = 4  # relabelled behind the service's back
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptCorrection):
        corrections.read(record.id)
    # a file copied under another correction's name is refused too
    other = make_file(digit(2), 5, Source.pixels)
    path_of(corrections, other.id).write_text(record.model_dump_json())
    with pytest.raises(CorruptCorrection):
        corrections.read(other.id)


def test_rebuild_after_redis_lost_everything(corrections: Corrections) -> None:
    ids = [corrections.add(make_file(digit(s), s % 10, Source.pixels)).item.id for s in range(4)]
    corrections.rebuild()
    assert corrections.rebuild_if_lost() is None  # marked complete: nothing to do
    corrections.index.redis.flushdb()
    assert corrections.index.count() == 0
    assert corrections.rebuild_if_lost() == (4, 0)
    assert corrections.index.ids() == set(ids)
    assert corrections.index.stats().total == 4
    # an entry whose file is gone is dropped; a damaged file is not indexed
    corrections.files.delete(ids[0])
    path_of(corrections, ids[1]).write_text("{}")
    corrections.index.redis.flushdb()
    assert corrections.rebuild() == (2, 0)
    corrections.files.delete(ids[2])
    assert corrections.rebuild() == (0, 1)
    assert corrections.index.ids() == {ids[3]}


def test_holdout_split_is_seeded_and_complete() -> None:
    ids = sorted(uuid.uuid4() for _ in range(50))
    train, held = finetune.holdout_split(ids, 0.2, seed=7)
    assert len(held) == 10 and sorted(train + held) == ids
    assert finetune.holdout_split(ids, 0.2, seed=7) == (train, held)
    assert finetune.holdout_split(ids, 0.2, seed=8) != (train, held)
    assert finetune.holdout_split(ids, 0.0, seed=7) == (ids, [])


def test_a_fine_tune_inherits_the_architecture_and_refuses_a_conflict() -> None:
    parent = TrainParams(n_hidden=64, input_scaling="unit", dtype="float64")
    merged = finetune.inherit({"epochs": 3}, parent)
    assert merged == {
        "epochs": 3,
        "n_hidden": 64,
        "input_scaling": InputScaling.unit,
        "dtype": "float64",
    }
    assert finetune.inherit({"n_hidden": 64}, parent)["n_hidden"] == 64
    with pytest.raises(finetune.ParentConflict) as raised:
        finetune.inherit({"n_hidden": 50}, parent)
    assert raised.value.name == "n_hidden" and "50" in str(raised.value)


def test_frozen_ids_are_written_once(raw_redis: redis.Redis, tmp_path: Path) -> None:
    jobs = JobStore(raw_redis, KEYS)
    job = Job(id=uuid.uuid4(), params=TrainParams(epochs=1), epochs=1, feedback_weight=2)
    jobs.create(job, max_queued=10)
    files = FeedbackFiles(LocalStore(tmp_path))
    for seed in range(3):
        files.write(make_file(digit(seed), seed, Source.pixels))
    first = finetune.freeze(jobs, KEYS, job.id, files)
    assert first == files.ids() and len(first) == 3
    summary = jobs.get(job.id).feedback  # type: ignore[union-attr]
    assert summary is not None and summary.count == 3
    assert summary.sha256 == finetune.ids_sha256(first)
    files.write(make_file(digit(9), 9, Source.pixels))  # arrives after the start
    assert finetune.freeze(jobs, KEYS, job.id, files) == first  # a resume: the same list
    assert jobs.get(job.id).feedback == summary  # type: ignore[union-attr]


def test_corrections_join_the_training_set_repeated(tmp_path: Path) -> None:
    files = FeedbackFiles(LocalStore(tmp_path))
    records = [make_file(digit(s), s, Source.pixels) for s in range(10)]
    for record in records:
        files.write(record)
    ids = [record.id for record in records]
    job = Job(
        id=uuid.uuid4(),
        params=TrainParams(epochs=1, seed=3),
        epochs=1,
        feedback_weight=3,
        feedback_holdout=0.2,
    )
    loaded = finetune.load(job, sorted(ids), files)
    assert len(loaded.train_y) == 8 and len(loaded.holdout_y) == 2 and loaded.trained_on == 8
    x = np.zeros((5, 784), np.uint8)
    y = np.zeros(5, np.uint8)
    data = training.Dataset(x, y, x[:0], y[:0], x, y)
    joined = finetune.with_corrections(data, loaded)
    assert len(joined.train_y) == 5 + 8 * 3
    assert np.array_equal(joined.train_x[5:8], np.repeat(loaded.train_x[:1], 3, axis=0))
    held_out = {bytes(row) for row in loaded.holdout_x}
    assert not held_out & {bytes(row) for row in joined.train_x}


def test_a_fine_tune_starts_from_the_parent_with_zero_momentum() -> None:
    from shared.registry.files import LoadedModel

    rng = np.random.default_rng(0)
    weights = mlp.init_weights(784, 20, 10, rng, np.float32)
    parent = LoadedModel(uuid.uuid4(), weights, None, "0" * 64, 0)  # type: ignore[arg-type]
    state = finetune.initial_state(parent, TrainParams(n_hidden=20, eta=0.05, dtype="float64"))
    assert state.epoch == 0 and state.eta == 0.05 and not state.history
    for mine, theirs in zip(state.weights.arrays(), weights.arrays(), strict=True):
        assert mine.dtype == np.float64 and np.array_equal(mine, theirs)
        assert mine is not theirs
    assert all(not step.any() for step in state.previous_step.arrays())


def test_an_entry_whose_file_is_gone_does_not_block_sending_it_again(
    corrections: Corrections,
) -> None:
    record = make_file(digit(1), 3, Source.pixels)
    corrections.add(record)
    corrections.files.delete(record.id)  # e.g. a crash between a delete's two steps
    again = corrections.add(make_file(digit(1), 3, Source.pixels, predicted=2))
    assert again.created and again.item.predicted == 2
    assert corrections.files.exists(record.id) and corrections.index.count() == 1
    # and a file the index lost is found and indexed, not written over
    corrections.index.remove(again.item)
    found = corrections.add(make_file(digit(1), 3, Source.pixels, predicted=5))
    assert not found.created and found.item.predicted == 2
    assert corrections.index.get(record.id) == again.item
