"""cli/client.py: the SSE reader and one-line error messages."""

import httpx
import pytest

from cli.client import Api, ApiError, _detail, sse_events


def test_sse_events_parse_the_wire_format() -> None:
    lines = [
        ": ping - 2026-01-01",
        "event: status",
        'data: {"status": "running"}',
        "",
        "id: 1",
        "event: epoch",
        'data: {"epoch": 1,',
        'data:  "cost": 2.5}',
        "",
        "",
        "data: plain",
        "",
    ]
    assert list(sse_events(iter(lines))) == [
        ("status", '{"status": "running"}', None),
        ("epoch", '{"epoch": 1,\n "cost": 2.5}', "1"),
        ("message", "plain", None),
    ]


def test_error_details_become_one_line() -> None:
    validation = httpx.Response(
        422,
        json={
            "detail": [
                {"loc": ["body", "epochs"], "msg": "Input should be greater than or equal to 1"},
                {"loc": ["query", "limit"], "msg": "too\nbig"},
            ]
        },
    )
    assert _detail(validation) == (
        "epochs: Input should be greater than or equal to 1; limit: too big"
    )
    assert _detail(httpx.Response(404, json={"detail": "job x not found"})) == "job x not found"
    assert _detail(httpx.Response(502, text="<html>\nBad gateway\n</html>")) == (
        "<html> Bad gateway </html>"
    )


def test_http_statuses_become_api_errors() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/secret":
            return httpx.Response(401, json={"detail": "missing or wrong API key"})
        if request.url.path == "/html":
            return httpx.Response(200, text="<html></html>")
        return httpx.Response(409, json={"detail": "job already succeeded"})

    api = Api("http://service.invalid")
    api.http = httpx.Client(base_url=api.url, transport=httpx.MockTransport(answer))
    with pytest.raises(ApiError, match=r"^401 missing or wrong API key: pass --api-key"):
        api.get("/secret")
    with pytest.raises(ApiError, match=r"^409 job already succeeded$"):
        api.post("/jobs/x/cancel")
    with pytest.raises(ApiError, match="did not answer with JSON"):
        api.get("/html")
