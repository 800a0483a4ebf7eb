"""bench/load.py, briefly, against a real stack with two training processes: no 5xx
while /predict is under concurrent load and two trainings run."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import load
from shared.data.mnist import Mnist
from tests.e2e.conftest import Stack, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_workers(tmp_path: Path, mnist_data: Mnist) -> Iterator[Stack]:
    """The stack's worker plus a second one: two trainings can run at once, one BLAS
    thread each (the machine may have only two cores)."""
    with running_stack(tmp_path, BLAS_THREADS="1") as stack:
        stack.start_worker("--concurrency", "1", "--hostname", "second@%h")
        yield stack


def test_load_while_two_trainings_run(two_workers: Stack) -> None:
    report = load.main(
        [
            "--url", two_workers.url,
            "--duration", "3",
            "--concurrency", "4",
            "--train-if-empty",
            "--running-timeout", "30",
            "--no-record",
        ]
    )  # fmt: skip
    single, batch = report.kinds["single"], report.kinds["batch"]
    assert single.count > 0 and batch.count > 0
    assert report.server_errors == 0 and report.transport_errors == 0, report.text("")
    assert single.statuses == {200: single.count} and batch.statuses == {200: batch.count}
    assert report.ok
    # both trainings really ran alongside the load, and were stopped afterwards
    assert report.running_samples and max(report.running_samples) == 2
    assert all(s.startswith("cancelled") for s in report.job_statuses_after.values())
    assert single.images_correct > 0.5 * single.images_checked
