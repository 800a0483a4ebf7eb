"""Structured logs: JSON lines, with the job id on every line logged inside a job."""

import json
import logging

import pytest

from shared.logs import configure_logging, job_context


@pytest.fixture
def restore_logging():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_the_job_id(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    log = logging.getLogger("mnist.test")
    log.info("outside")
    with job_context("1234"):
        log.info("epoch %d", 3)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert lines[0]["message"] == "outside" and "job_id" not in lines[0]
    assert lines[1] == {**lines[1], "message": "epoch 3", "job_id": "1234", "level": "INFO"}


@pytest.mark.usefixtures("restore_logging")
def test_text_format(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")
    configure_logging("INFO", "text")  # idempotent: one handler, one line
    with job_context("abcd"):
        logging.getLogger("mnist.test").warning("hello")
    (line,) = capfd.readouterr().err.splitlines()
    assert line.endswith("job=abcd hello") and " WARNING " in line
