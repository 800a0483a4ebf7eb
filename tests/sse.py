"""A minimal Server-Sent Events reader over httpx, for tests."""

import json
from collections.abc import Iterator
from typing import Any

import httpx


def events(response: httpx.Response) -> Iterator[tuple[str, Any, str | None]]:
    """``(event, data decoded as JSON, id)`` for each event of a streaming response."""
    event, data, event_id = "message", [], None
    for line in response.iter_lines():
        if not line:
            if data:
                yield event, json.loads("\n".join(data)), event_id
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value


def collect(
    http: httpx.Client, path: str, headers: dict[str, str] | None = None
) -> list[tuple[str, Any, str | None]]:
    """Every event of a stream that ends by itself."""
    with http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(events(response))
