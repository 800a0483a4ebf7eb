"""A job the worker finishes stores its test-set confusion matrix and errors with the model."""

from pathlib import Path

import pytest

from shared.mnist import Mnist
from shared.registry import model_info
from shared.schemas import JobStatus
from shared.store import ModelStore
from tests.unit.test_jobs import settings_for, submit
from worker.jobs import Stores, run_job


def test_model_info_has_confusion_matrix_and_errors(
    stores: Stores, redis_url: str, tmp_path: Path, mnist_data: Mnist
) -> None:
    settings = settings_for(redis_url, tmp_path)
    job_id = submit(stores.jobs)
    assert run_job(job_id, settings, stores) is JobStatus.succeeded
    info = stores.registry.get_model(job_id)
    assert info is not None and info.confusion is not None and info.test_accuracy is not None
    confusion = info.confusion
    assert len(confusion) == 10 and all(len(row) == 10 for row in confusion)
    assert sum(map(sum, confusion)) == 10_000
    assert [sum(row) for row in confusion] == [
        int((mnist_data.test_labels == k).sum()) for k in range(10)
    ]
    correct = sum(confusion[k][k] for k in range(10))
    assert correct / 10_000 == pytest.approx(info.test_accuracy, abs=1e-12)
    assert len(info.errors) == min(100, 10_000 - correct)
    indices = [error.index for error in info.errors]
    assert indices == sorted(indices)
    for error in info.errors:
        assert error.label == mnist_data.test_labels[error.index] != error.predicted
    # the same facts come back from the model file alone (a registry rebuild)
    assert model_info(ModelStore(settings.model_dir).load(job_id)) == info
