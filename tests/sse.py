"""A minimal Server-Sent Events reader over httpx, for tests."""

import json
from collections.abc import Iterator
from typing import Any

import httpx

from cli.client import sse_events


def events(response: httpx.Response) -> Iterator[tuple[str, Any, str | None]]:
    """``(event, data decoded as JSON, id)`` for each event of a streaming response
    (parsed as ``mnist`` parses it: tests/unit/test_cli_client.py tests the parser)."""
    for event, data, event_id in sse_events(response.iter_lines()):
        yield event, json.loads(data), event_id


def collect(
    http: httpx.Client, path: str, headers: dict[str, str] | None = None
) -> list[tuple[str, Any, str | None]]:
    """Every event of a stream that ends by itself."""
    with http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(events(response))
