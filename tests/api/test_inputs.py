"""Inputs the JSON parser and the HTTP layer let through: lone surrogates, odd
``Last-Event-ID`` headers, methods a path does not take. In-process over real Redis."""

import json
import uuid

import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from api.errors import validation_errors
from api.routes.events import resume_after
from shared.jobs.store import JobStore
from shared.schemas.jobs import EpochRecord, Job, JobEnd, JobStatus
from shared.schemas.params import TrainParams
from tests.sse import collect

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "body",
    [
        rb'{"epochs": "\ud800"}',  # a lone high surrogate as a value
        rb'{"epochs": "\udfff"}',  # a lone low surrogate
        rb'{"\ud800": 1}',  # as a key
        rb'{"n_hidden": 5, "x\ud800y": {"\udc00": [1]}}',  # an unknown key, nested
        rb'{"eta": "' + b"\\ud800" * 300 + b'"}',  # long: echoed as a shortened repr
    ],
)
def test_lone_surrogates_are_a_422_not_a_500(
    client: TestClient, jobs: JobStore, body: bytes
) -> None:
    """JSON's \\ud800 escape decodes to a str UTF-8 cannot encode; the 422 still can."""
    response = client.post("/jobs", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail and all({"loc", "msg", "type"} <= set(error) for error in detail)
    response.content.decode("utf-8")  # strict UTF-8 on the wire
    assert jobs.list_jobs(0, 10)[1] == 0


def test_surrogates_in_loc_msg_and_input_come_back_escaped() -> None:
    exc = RequestValidationError(
        [
            {
                "loc": ("body", "a\ud800b", 3),
                "msg": "bad key \udfff",
                "type": "extra_forbidden",
                "input": {"a\ud800b": "\udc00"},
            },
            {"loc": ("body", "x"), "msg": "m", "type": "t", "input": "\ud800"},
        ]
    )
    errors = validation_errors(exc)
    body = JSONResponse({"detail": errors}).body  # raised UnicodeEncodeError before
    assert json.loads(body)["detail"][0]["loc"] == ["body", "a\\ud800b", 3]
    assert errors[0]["msg"] == "bad key \\udfff"
    assert "\\ud800" in errors[0]["input"] and "\\udc00" in errors[0]["input"]
    assert errors[1]["input"] == "\\ud800"
    plain = validation_errors(RequestValidationError([{"loc": ("body",), "msg": "é", "type": "t"}]))
    assert plain[0]["msg"] == "é"  # encodable text is left alone


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/jobs", "GET, POST"),
        ("DELETE", "/jobs", "GET, POST"),
        ("DELETE", "/jobs/{id}", "GET"),
        ("PUT", "/jobs/{id}/cancel", "POST"),
        ("GET", "/predict", "POST"),
        ("POST", "/static/main.js", "GET, HEAD"),  # StaticFiles' own 405 is kept
    ],
)
def test_405_lists_every_method_of_the_path(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path.replace("{id}", str(uuid.uuid4())))
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json() == {"detail": "Method Not Allowed"}


def _finished_job(jobs: JobStore, epochs: int) -> uuid.UUID:
    job = Job(id=uuid.uuid4(), params=TrainParams(epochs=epochs), epochs=epochs)
    jobs.create(job, 100)
    jobs.update(job.id, lambda j: j.model_copy(update={"status": JobStatus.running}))
    for epoch in range(1, epochs + 1):
        jobs.record_epoch(job.id, EpochRecord(epoch=epoch, cost=1.0, seconds=0.01, eta=0.01))
    jobs.finish(job.id, JobStatus.succeeded, JobEnd(model_id=job.id))
    return job.id


@pytest.mark.parametrize(
    "last_event_id",
    [
        "1" * 5000,  # int() refuses more than 4300 digits: was a 500
        "99999999999999999999999",  # beyond a Redis list index: was an error blaming Redis
        "1234567890",  # ten digits
        "4",  # more epochs than the job has
        "-1",
        "+1",
        "1_0",
        "0x2",
        "",
    ],
)
def test_unusable_last_event_id_replays_from_the_start(
    client: TestClient, jobs: JobStore, last_event_id: str
) -> None:
    job_id = _finished_job(jobs, 3)
    seen = collect(client, f"/jobs/{job_id}/events", headers={"Last-Event-ID": last_event_id})
    assert [(event, event_id) for event, _, event_id in seen] == [
        ("epoch", "1"),
        ("epoch", "2"),
        ("epoch", "3"),
        ("end", None),
    ]


def test_a_plain_last_event_id_resumes_after_it(client: TestClient, jobs: JobStore) -> None:
    job_id = _finished_job(jobs, 3)
    seen = collect(client, f"/jobs/{job_id}/events", headers={"Last-Event-ID": "2"})
    assert [(event, event_id) for event, _, event_id in seen] == [("epoch", "3"), ("end", None)]


@pytest.mark.parametrize(
    ("header", "after"),
    [
        ("7", 7),
        ("007", 7),
        ("5000", 5000),
        ("5001", 0),
        ("²", 0),  # Latin-1 0xB2: isdigit() is true, int() raises
        ("\u0661\u0662", 0),  # Arabic-Indic digits: int() would take them
        ("\uff11\uff12", 0),  # fullwidth digits
        ("1\n", 0),
        ("9" * 9, 0),
        (None, 0),
    ],
)
def test_resume_after_takes_only_ascii_epoch_numbers(header: str | None, after: int) -> None:
    assert resume_after(header, 5000) == after
