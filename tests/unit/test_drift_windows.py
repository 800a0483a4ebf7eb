"""Drift windows in a real Redis (shared/drift/windows.py), the API's per-process
buffer that feeds them (api/drift.py), and reference profiles computed on first need
(shared/drift/monitor.py)."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest
import redis

from api.drift import DriftRecorder
from shared.data.mnist import Mnist
from shared.drift.monitor import DriftMonitor
from shared.drift.windows import DriftWindows
from shared.ml import drift
from shared.redisdb.client import connect
from shared.redisdb.keys import Keys
from shared.registry.service import Models
from shared.registry.store import ModelNotFound
from shared.schemas.models import SUMMARIES, ReferenceProfile
from tests import models as model_files
from tests.procs import free_port


def rows(n: int, start: float = 0.0) -> np.ndarray:
    """``n`` made-up summary rows whose first value counts up from ``start``."""
    out = np.zeros((n, len(SUMMARIES)))
    out[:, 0] = start + np.arange(n)
    return out


@pytest.fixture
def windows(redis_client: redis.Redis, keys: Keys) -> DriftWindows:
    return DriftWindows(redis_client, keys, size=5)


def test_a_window_keeps_the_newest_inputs_oldest_first(
    windows: DriftWindows, models: Models
) -> None:
    model_id = model_files.register(models)
    windows.push({model_id: (np.array([100.0, 101.0, 102.0]), rows(3))})
    windows.push({model_id: (np.array([103.0, 104.0, 105.0, 106.0]), rows(4, start=3))})
    window = windows.read(model_id)
    assert window.rows[:, 0].tolist() == [2, 3, 4, 5, 6]
    assert window.times.tolist() == [102.0, 103.0, 104.0, 105.0, 106.0]
    assert window.since == datetime.fromtimestamp(102.0, UTC)
    assert windows.observed() == [model_id]


def test_a_large_push_goes_in_several_chunks(
    redis_client: redis.Redis, keys: Keys, models: Models
) -> None:
    """The script appends 1,000 elements per call (Lua's unpack has a limit)."""
    model_id = model_files.register(models)
    windows = DriftWindows(redis_client, keys, size=2500)
    windows.push({model_id: (np.arange(2600, dtype=np.float64), rows(2600))})
    window = windows.read(model_id)
    assert window.rows[:, 0].tolist() == list(range(100, 2600))


def test_nothing_is_kept_for_a_model_the_registry_does_not_have(windows: DriftWindows) -> None:
    stranger = uuid.uuid4()
    windows.push({stranger: (np.array([1.0]), rows(1))})
    assert len(windows.read(stranger).rows) == 0 and windows.observed() == []


def test_deleting_a_model_deletes_its_window(windows: DriftWindows, models: Models) -> None:
    model_id = model_files.register(models)
    windows.push({model_id: (np.array([1.0]), rows(1))})
    models.delete(model_id)
    assert len(windows.read(model_id).rows) == 0 and windows.observed() == []
    windows.push({model_id: (np.array([2.0]), rows(1))})  # a flush after the deletion
    assert len(windows.read(model_id).rows) == 0 and windows.observed() == []


def test_an_element_that_does_not_read_is_skipped(
    windows: DriftWindows, models: Models, redis_client: redis.Redis, keys: Keys
) -> None:
    model_id = model_files.register(models)
    windows.push({model_id: (np.array([1.0]), rows(1))})
    redis_client.rpush(keys.drift_window(model_id), "not a row", "1 2 3")
    assert windows.read(model_id).times.tolist() == [1.0]


def probabilities(n: int) -> np.ndarray:
    p = np.full((n, 10), 0.05)
    p[:, 3] = 0.55
    return p


def test_the_recorder_pushes_what_was_served_in_one_batch(
    windows: DriftWindows, models: Models, redis_client: redis.Redis
) -> None:
    """100 predictions, one flush: one script call for the model, not 100 round trips."""
    model_id = model_files.register(models)
    recorder = DriftRecorder(DriftWindows(windows.redis, windows.keys, size=1000))
    picture = np.zeros((1, 784), dtype=np.float32)
    picture[0, 14 * 28 + 14] = 255
    before = _calls(redis_client, "evalsha")
    for _ in range(100):
        recorder.observe(model_id, picture, probabilities(1))
    assert len(recorder.windows.read(model_id).rows) == 0  # nothing sent before the flush
    assert recorder.flush() == 100
    assert _calls(redis_client, "evalsha") - before == 1
    window = recorder.windows.read(model_id)
    assert len(window.rows) == 100
    expected = drift.rows(picture, probabilities(1))[0]
    np.testing.assert_allclose(window.rows, np.tile(expected, (100, 1)), rtol=1e-5)
    assert recorder.flush() == 0  # nothing left


def _calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def test_the_buffer_keeps_only_a_window_per_model(windows: DriftWindows, models: Models) -> None:
    """Memory is bounded: batches older than the window are dropped before they are sent,
    and a batch larger than the window is cut to its newest inputs."""
    model_id = model_files.register(models)
    recorder = DriftRecorder(windows)  # size 5
    for value in (10, 20, 30, 40):  # four batches of 3: the newest two hold the newest 5
        batch = np.zeros((3, 784), dtype=np.float32)
        batch[:, 0] = value  # an ink mass of value / 255
        recorder.observe(model_id, batch, probabilities(3))
    assert recorder.flush() == 6
    masses = (windows.read(model_id).rows[:, 0] * 255).round()
    assert masses.tolist() == [30, 30, 40, 40, 40]
    big = np.zeros((9, 784), dtype=np.float32)
    big[:, 0] = np.arange(9)
    recorder.observe(model_id, big, probabilities(9))
    assert recorder.flush() == 5
    masses = (windows.read(model_id).rows[:, 0] * 255).round()
    assert masses.tolist() == [4, 5, 6, 7, 8]


def test_a_redis_that_does_not_answer_loses_the_batch_not_the_prediction(models: Models) -> None:
    model_id = model_files.register(models)
    away = connect(f"redis://127.0.0.1:{free_port()}/0", retries=0)
    recorder = DriftRecorder(DriftWindows(away, Keys("test:"), size=10))
    recorder.observe(model_id, np.zeros((2, 784)), probabilities(2))  # does not raise
    assert recorder.flush() == 0 and recorder.dropped == 2


def counting(load: Callable[[], Mnist]) -> tuple[Callable[[], Mnist], list[int]]:
    calls: list[int] = []

    def loader() -> Mnist:
        calls.append(1)
        return load()

    return loader, calls


def test_a_model_without_a_profile_gets_one_from_mnist_once(
    windows: DriftWindows, models: Models, mnist_data: Mnist
) -> None:
    model_id = model_files.register(models)
    assert models.registry.get_model(model_id).reference_profile is None  # type: ignore[union-attr]
    loader, calls = counting(lambda: mnist_data)
    monitor = DriftMonitor(windows, models, loader, threshold=0.2, min_samples=1)
    assert monitor.report(model_id, compute=False) is None  # /metrics never computes one
    first = monitor.report(model_id)
    assert first is not None and first.reference_source == "mnist" and first.window == 0
    stored = models.registry.get_model(model_id)
    assert stored is not None and stored.reference_profile is not None
    assert stored.reference_profile.inputs == 60_000 and stored.reference_profile.answers == 10_000
    masses = drift.summarise(mnist_data.train_images)[:, 0]
    expected = drift.histogram(masses, drift.EDGES["ink_mass"])
    assert stored.reference_profile.ink_mass.counts == expected.tolist()
    again = DriftMonitor(windows, models, loader, threshold=0.2, min_samples=1)  # another process
    assert again.report(model_id) is not None
    assert calls == [1]  # computed once
    assert models.registry.get_model(model_id).reference_profile == stored.reference_profile  # type: ignore[union-attr]


def test_the_first_profile_kept_stays(models: Models, mnist_data: Mnist) -> None:
    model_id = model_files.register(models)

    def make(seed: int) -> ReferenceProfile:
        return drift.reference_profile(
            mnist_data.train_images[:100],
            mnist_data.test_images[:100],
            model_files.weights(seed),
            1.0,
            source="mnist",
            now=datetime.now(UTC),
        )

    first, second = make(1), make(2)
    assert first != second
    assert models.registry.keep_reference_profile(model_id, first) == first
    assert models.registry.keep_reference_profile(model_id, second) == first
    assert models.registry.get_model(model_id).reference_profile == first  # type: ignore[union-attr]
    assert models.registry.keep_reference_profile(uuid.uuid4(), second) is None


def test_an_unknown_model_has_no_report(windows: DriftWindows, models: Models) -> None:
    monitor = DriftMonitor(windows, models, lambda: pytest.fail("no MNIST needed"), 0.2, 1)
    with pytest.raises(ModelNotFound):
        monitor.report(uuid.uuid4())
