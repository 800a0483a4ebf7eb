"""api/limits.py's three rules on request bodies (issue 17, point 8), with small ASGI
apps and a scripted client in one event loop; tests/e2e/test_slow_bodies.py provokes
the same through real sockets against uvicorn."""

import asyncio
import json
from collections.abc import Awaitable, Callable

import anyio
import pytest
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from api.limits import FREE_BYTES, RETRY_AFTER_SECONDS, BodyBudget, BodyLimits, charge
from shared.config import Settings

MAX = 1024 * 1024
BIG = 256 * 1024  # charged: above FREE_BYTES


class Client:
    """The server's side of one request as the middleware sees it: the body's pieces in
    order, then either the end of the body or (``stall``) nothing more for ever, as a
    client that stops sending. Records every message sent back."""

    def __init__(self, *pieces: bytes, stall: bool = False, then_wait: float = 0.0) -> None:
        self.pieces = list(pieces) or [b""]  # uvicorn's first message for a GET: no body
        self.stall, self.then_wait = stall, then_wait
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.pieces:
            body = self.pieces.pop(0)
            more = bool(self.pieces) or self.stall
            return {"type": "http.request", "body": body, "more_body": more}
        if self.stall:
            await anyio.sleep_forever()
        await anyio.sleep(self.then_wait)  # uvicorn: nothing until the client leaves
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def starts(self) -> list[Message]:
        return [m for m in self.sent if m["type"] == "http.response.start"]

    @property
    def status(self) -> int:
        (start,) = self.starts  # exactly one answer, never two
        return int(start["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.starts[0]["headers"])

    @property
    def detail(self) -> str:
        body = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        return str(json.loads(body)["detail"])


def scope(method: str = "POST", **headers: str) -> Scope:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": method, "path": "/", "headers": raw, "query_string": b""}


def declared(n: int) -> Scope:
    return scope(content_length=str(n))


class Reader:
    """An app that reads the whole body (as FastAPI does before a route runs) and
    answers 200 with its length; notes what it saw and what the budget held meanwhile."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.held: int | None = None
        self.disconnected = False
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        request = Request(scope, receive)
        try:
            body = await request.body()
        except Exception:  # ClientDisconnect: FastAPI answers 400 to it
            self.disconnected = True
            await Response("could not read the body", 400)(scope, receive, send)
            return
        self.held = self.budget.used
        await JSONResponse({"length": len(body)})(scope, receive, send)


def run(
    scope: Scope,
    client: Client,
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
    budget: BodyBudget,
    timeout: float = 60.0,
) -> None:
    limits = BodyLimits(app, max_bytes=MAX, timeout_seconds=timeout, budget=budget)
    asyncio.run(limits(scope, client.receive, client.send))


def test_charge_is_nothing_up_to_free_bytes() -> None:
    assert [charge(n) for n in (0, FREE_BYTES, FREE_BYTES + 1)] == [0, 0, FREE_BYTES + 1]


def test_a_declared_body_above_max_is_413_and_the_app_never_runs() -> None:
    budget = BodyBudget(4 * MAX)
    app, client = Reader(budget), Client(b"x" * 10)
    run(declared(MAX + 1), client, app, budget)
    assert client.status == 413 and "larger than" in client.detail
    assert client.headers[b"connection"] == b"close"
    assert app.calls == 0 and budget.used == 0


def test_a_declared_body_is_reserved_while_its_request_runs_and_released_after() -> None:
    budget = BodyBudget(4 * MAX)
    app, client = Reader(budget), Client(b"x" * (BIG // 2), b"x" * (BIG // 2))
    run(declared(BIG), client, app, budget)
    assert client.status == 200 and app.held == BIG
    assert b"connection" not in client.headers  # the body was read: the connection stays
    assert budget.used == 0


def test_the_reservation_is_released_when_the_app_raises() -> None:
    budget = BodyBudget(4 * MAX)

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        await Request(scope, receive).body()
        raise RuntimeError("a route's bug")

    with pytest.raises(RuntimeError, match="a route's bug"):  # not hidden: no refusal here
        run(declared(BIG), Client(b"x" * BIG), failing, budget)
    assert budget.used == 0


def test_a_body_that_does_not_fit_is_refused_at_once_with_503() -> None:
    budget = BodyBudget(2 * BIG)
    assert budget.take(BIG + 1)  # another request holds more than half
    app, client = Reader(budget), Client(b"x" * BIG)
    run(declared(BIG), client, app, budget)
    assert client.status == 503 and "in flight" in client.detail
    assert client.headers[b"retry-after"] == str(RETRY_AFTER_SECONDS).encode()
    assert client.headers[b"connection"] == b"close"
    assert client.headers[b"content-type"] == b"application/json"
    assert app.calls == 0 and client.pieces  # nothing of the body was read
    assert budget.used == BIG + 1  # the other request's bytes, untouched


def test_small_bodies_are_not_charged_so_they_pass_a_full_budget() -> None:
    budget = BodyBudget(2 * BIG)
    assert budget.take(2 * BIG)
    app, client = Reader(budget), Client(b"x" * 3000)
    run(declared(3000), client, app, budget)
    assert client.status == 200 and app.held == 2 * BIG


def test_a_streamed_body_is_charged_as_it_arrives_and_refused_when_it_no_longer_fits() -> None:
    budget = BodyBudget(2 * BIG)
    assert budget.take(BIG)
    app = Reader(budget)
    client = Client(*[b"x" * (BIG // 4)] * 8)  # 2 x BIG in all, without Content-Length
    run(scope(transfer_encoding="chunked"), client, app, budget)
    assert client.status == 503 and client.headers[b"connection"] == b"close"
    assert app.disconnected  # the app's read ended; its own 400 never reached the client
    assert client.pieces  # the rest of the body was never read
    assert budget.used == BIG


def test_a_streamed_body_above_max_is_413() -> None:
    budget = BodyBudget(4 * MAX)
    app, client = Reader(budget), Client(*[b"x" * BIG] * 5)
    run(scope(transfer_encoding="chunked"), client, app, budget)
    assert client.status == 413 and app.disconnected and budget.used == 0


def test_a_body_that_stops_arriving_is_408_and_the_connection_closed() -> None:
    budget = BodyBudget(4 * MAX)
    app, client = Reader(budget), Client(b"x" * (BIG - 1), stall=True)
    run(declared(BIG), client, app, budget, timeout=0.05)
    assert client.status == 408 and "not received within 0.05 s" in client.detail
    assert client.headers[b"connection"] == b"close"
    assert app.disconnected and budget.used == 0


def test_no_deadline_once_the_body_is_in() -> None:
    """An app waiting for the client to leave (an event stream) is not timed out."""
    budget = BodyBudget(4 * MAX)
    waited: list[Message] = []

    async def waiting(scope: Scope, receive: Receive, send: Send) -> None:
        await Request(scope, receive).body()
        waited.append(await receive())  # blocks for 10x the body's deadline
        await Response(status_code=204)(scope, receive, send)

    for request, client in [
        (scope("GET"), Client(then_wait=0.5)),
        (declared(10), Client(b"x" * 10, then_wait=0.5)),
    ]:
        run(request, client, waiting, budget, timeout=0.05)
        assert client.status == 204
    assert [m["type"] for m in waited] == ["http.disconnect"] * 2


def test_an_answer_before_the_body_is_in_closes_the_connection() -> None:
    budget = BodyBudget(4 * MAX)

    async def unread(scope: Scope, receive: Receive, send: Send) -> None:
        response = Response(status_code=405, headers={"Connection": "keep-alive"})
        await response(scope, receive, send)

    cases = [(declared(10), b"close"), (scope("GET"), b"keep-alive"), (declared(0), b"keep-alive")]
    for request, expected in cases:
        client = Client(b"x" * 10)
        run(request, client, unread, budget)
        assert client.status == 405 and client.headers.get(b"connection") == expected
        assert [k for k, _ in client.starts[0]["headers"]].count(b"connection") <= 1


def test_a_started_answer_is_ended_when_the_body_times_out() -> None:
    budget = BodyBudget(4 * MAX)
    after: list[Message] = []

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        while (message := await receive())["type"] != "http.disconnect":
            pass
        after.append(message)
        await send({"type": "http.response.body", "body": b"late", "more_body": False})

    client = Client(b"x", stall=True)
    run(declared(10), client, streaming, budget, timeout=0.05)
    assert client.status == 200 and client.headers[b"connection"] == b"close"
    assert [m.get("body") for m in client.sent[1:]] == [b"data: 1\n\n", b""]
    assert after == [{"type": "http.disconnect"}]


def test_the_budget_takes_the_largest_body() -> None:
    mib = 1024 * 1024
    with pytest.raises(ValidationError, match="MAX_BODY_BYTES_IN_FLIGHT"):
        Settings(max_body_bytes=8 * mib, max_body_bytes_in_flight=4 * mib)
    assert Settings().body_bytes_in_flight == 64 * mib
    assert Settings(max_body_bytes_in_flight=8 * mib).body_bytes_in_flight == 8 * mib
    # unset, it follows a MAX_BODY_BYTES raised above it: such a setting keeps working
    assert Settings(max_body_bytes=128 * mib).body_bytes_in_flight == 128 * mib
