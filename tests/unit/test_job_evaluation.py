"""A job the worker finishes stores its test-set confusion matrix and errors with the model."""

import pytest

from shared.data.mnist import Mnist
from shared.ml import drift
from shared.registry.service import model_info
from shared.schemas.jobs import JobStatus
from shared.schemas.models import INPUT_SUMMARIES
from shared.services import Services
from tests.unit.test_jobs import submit
from worker.run import run_job


def test_model_info_has_confusion_matrix_and_errors(services: Services, mnist_data: Mnist) -> None:
    job_id = submit(services.jobs)
    assert run_job(job_id, services) is JobStatus.succeeded
    info = services.registry.get_model(job_id)
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
    rebuilt = model_info(services.models.files.load(job_id))
    assert rebuilt.model_dump(exclude={"registered_at"}) == info.model_dump(
        exclude={"registered_at"}
    )


def test_a_trained_model_carries_its_reference_profile(
    services: Services, mnist_data: Mnist
) -> None:
    """The worker profiles the model's own training images and its answers on the test
    set; its predicted classes are the confusion matrix's columns."""
    job_id = submit(services.jobs)  # 2,000 training images
    assert run_job(job_id, services) is JobStatus.succeeded
    info = services.registry.get_model(job_id)
    assert info is not None and info.confusion is not None
    profile = info.reference_profile
    assert profile is not None and profile.source == "training"
    assert (profile.inputs, profile.answers) == (2000, 10_000)
    summaries = drift.summarise(mnist_data.train_images[:2000])
    for column, name in enumerate(INPUT_SUMMARIES):
        expected = drift.histogram(summaries[:, column], drift.EDGES[name])
        assert getattr(profile, name).counts == expected.tolist(), name
    columns = [sum(row[k] for row in info.confusion) for k in range(10)]
    assert profile.predicted_class.counts == columns
    stored = services.models.files.load(job_id).meta.reference_profile
    assert stored == profile  # in the file too: an export carries it
