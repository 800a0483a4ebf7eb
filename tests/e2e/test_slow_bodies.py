"""Issue 17, point 8, provoked for real against ``uvicorn api.main:app``: slow request
bodies may neither hold a connection for ever nor pile up in memory.

Raw sockets declare bodies and send them slowly or not at all; the API runs with a
small ``BODY_TIMEOUT_SECONDS`` where the deadline is under test and with a long one
where the bytes-in-flight budget is (so that the bodies holding it stay held until the
test lets them go). No wall-clock assertions: memory and time figures are in
BENCHMARKS.md (``python -m bench.slow_bodies``)."""

import json
import select
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.artifacts import open_store
from shared.registry.files import ModelFiles
from tests.models import meta, weights
from tests.procs import free_port, redis_server, service_env, start_api, stop, wait_until

pytestmark = pytest.mark.e2e

MAX_BODY = 256 * 1024
BUDGET = 4 * MAX_BODY  # four of the largest bodies at once
ONE_IMAGE = json.dumps({"pixels": [0] * 784}).encode()


@dataclass
class Api:
    proc: subprocess.Popen
    url: str
    port: int

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        raise KeyError(name)

    def rejected(self, reason: str) -> float:
        return self.metric("mnist_rejected_requests_total", reason=reason)

    def in_flight(self) -> float:
        return self.metric("mnist_request_body_bytes_in_flight")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A private redis-server and a model folder with one small model in it."""
    root = tmp_path_factory.mktemp("slow-bodies")
    model_id = uuid.uuid4()
    store = open_store(f"file://{(root / 'models').absolute()}")
    ModelFiles(store).save(model_id, weights(), meta(model_id))
    with redis_server(root / "redis") as redis_url:
        yield root, redis_url


def _api(root: Path, redis_url: str, name: str, timeout: float) -> Iterator[Api]:
    env = service_env(
        redis_url,
        root / "models",
        BODY_TIMEOUT_SECONDS=str(timeout),
        MAX_BODY_BYTES=str(MAX_BODY),
        MAX_BODY_BYTES_IN_FLIGHT=str(BUDGET),
    )
    port = free_port()
    proc = start_api(env, root / f"{name}.log", port)
    try:
        yield Api(proc, f"http://127.0.0.1:{port}", port)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def timed(root: tuple[Path, str]) -> Iterator[Api]:
    """An API whose bodies must arrive within one second."""
    yield from _api(*root, "timed", 1.0)


@pytest.fixture(scope="module")
def budgeted(root: tuple[Path, str]) -> Iterator[Api]:
    """An API that waits for bodies far longer than any test runs."""
    yield from _api(*root, "budgeted", 600.0)


def head(length: int, path: str = "/predict") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after its answer

    @property
    def detail(self) -> str:
        assert self.headers["content-type"] == "application/json"
        return str(json.loads(self.body)["detail"])


def read_answer(sock: socket.socket) -> Answer:
    """One HTTP answer from ``sock``, then whether the server closed the connection."""
    sock.settimeout(60)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {data!r}"
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = top.decode().split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    sock.settimeout(10)
    try:
        closed = sock.recv(1) == b""
    except ConnectionResetError:
        closed = True
    except TimeoutError:
        closed = False
    return Answer(int(status_line.split()[1]), headers, body[:length], closed)


def predict(api: Api, body: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return httpx.post(f"{api.url}/predict", content=body, headers=headers, timeout=30)


def test_a_body_sent_but_for_its_last_byte_is_408_and_the_connection_closed(
    timed: Api,
) -> None:
    before = timed.rejected("body_timeout")
    with timed.connect() as sock:
        sock.sendall(head(MAX_BODY) + b"x" * (MAX_BODY - 1))
        answer = read_answer(sock)
    assert answer.status == 408, answer
    assert answer.detail == "request body not received within 1 s"
    assert answer.headers["connection"] == "close" and answer.closed
    assert timed.rejected("body_timeout") == before + 1
    assert timed.in_flight() == 0  # its reservation went with it


def test_a_trickling_body_is_408(timed: Api) -> None:
    before = timed.rejected("body_timeout")
    with timed.connect() as sock:
        sock.sendall(head(len(ONE_IMAGE)))
        for byte in ONE_IMAGE[:-1]:  # at most ~470 s: a bound, the deadline ends it far sooner
            sock.sendall(bytes([byte]))
            if select.select([sock], [], [], 0.2)[0]:  # the server has answered
                break
        answer = read_answer(sock)
    assert answer.status == 408, answer
    assert "not received within" in answer.detail and answer.closed
    assert timed.rejected("body_timeout") == before + 1


def test_an_answer_before_the_body_is_read_closes_the_connection(timed: Api) -> None:
    """Without the close, uvicorn would read and drop whatever the client kept sending."""
    with timed.connect() as sock:
        sock.sendall(head(100_000, path="/livez"))  # a path that takes no POST: 405
        answer = read_answer(sock)
    assert answer.status == 405, answer
    assert answer.headers["connection"] == "close" and answer.closed


def test_bodies_beyond_the_budget_are_refused_at_once_and_normal_ones_still_answered(
    budgeted: Api,
) -> None:
    before = budgeted.rejected("body_budget")
    holders = [budgeted.connect() for _ in range(BUDGET // MAX_BODY)]
    try:
        for sock in holders:  # the largest bodies, all but their last byte: held
            sock.sendall(head(MAX_BODY) + b"x" * (MAX_BODY - 1))
        wait_until(lambda: budgeted.in_flight() == BUDGET, 30, "the holders' reservations")
        for _ in range(6):
            with budgeted.connect() as sock:
                sock.sendall(head(MAX_BODY))  # nothing of the body yet: the answer comes first
                answer = read_answer(sock)
            assert answer.status == 503, answer
            assert "in flight" in answer.detail
            assert int(answer.headers["retry-after"]) > 0
            assert answer.headers["connection"] == "close" and answer.closed
        assert budgeted.rejected("body_budget") == before + 6
        normal = predict(budgeted, ONE_IMAGE)  # small bodies are not charged
        assert normal.status_code == 200 and normal.json()["label"] in range(10)
        assert budgeted.in_flight() == BUDGET
    finally:
        for sock in holders:
            sock.close()  # the clients leave: their requests end
    wait_until(lambda: budgeted.in_flight() == 0, 30, "the budget's release")
    batch = json.dumps({"images": [[0] * 784] * 100}).encode()
    assert 16 * 1024 < len(batch) <= MAX_BODY  # charged to the budget
    large = predict(budgeted, batch)
    assert large.status_code == 200 and len(large.json()["labels"]) == 100
    assert budgeted.in_flight() == 0


def test_the_budget_is_released_after_every_ending(budgeted: Api) -> None:
    """A refusal, a finished request and a client that leaves mid-body give back what
    they held, so the whole budget can be taken again afterwards."""
    with budgeted.connect() as sock:  # too large: 413 before anything is reserved
        sock.sendall(head(MAX_BODY + 1))
        assert read_answer(sock).status == 413
    with budgeted.connect() as sock:  # leaves half-way through its body
        sock.sendall(head(MAX_BODY) + b"x" * 1000)
        wait_until(lambda: budgeted.in_flight() == MAX_BODY, 30, "its reservation")
    wait_until(lambda: budgeted.in_flight() == 0, 30, "the release after the client left")
    holders = [budgeted.connect() for _ in range(BUDGET // MAX_BODY)]
    try:
        for sock in holders:
            sock.sendall(head(MAX_BODY) + b"x" * (MAX_BODY - 1))
        wait_until(lambda: budgeted.in_flight() == BUDGET, 30, "the whole budget taken again")
        for sock in holders:
            sock.sendall(b"x")  # the last byte: not JSON, a 422, and the request ends
        answers = [read_answer(sock) for sock in holders]
    finally:
        for sock in holders:
            sock.close()
    assert [a.status for a in answers] == [422] * len(holders)
    # an answer is sent just before its request gives its reservation back
    wait_until(lambda: budgeted.in_flight() == 0, 30, "the release after the answers")
