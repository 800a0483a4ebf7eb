"""The CLI's view of the service: its HTTP API, and nothing else.

:class:`Api` wraps an ``httpx.Client``; every failure becomes an :class:`ApiError`
whose text is one line a person can act on. :func:`sse_events` reads a
Server-Sent Events stream, :meth:`Api.follow` a job's ``/jobs/{id}/events``,
reconnecting (with ``Last-Event-ID``) if the connection drops.
"""

import json
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any

import httpx
import typer


class ApiError(Exception):
    """A failure worth one line of text and a non-zero exit."""


def _detail(response: httpx.Response) -> str:
    """The server's ``detail``, validation errors flattened to ``field: message``."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text.strip() or response.reason_phrase
    if isinstance(detail, list):
        parts = []
        for error in detail:
            loc = [str(p) for p in error.get("loc", []) if p not in ("body", "query", "path")]
            parts.append(f"{'.'.join(loc) or 'request'}: {error.get('msg', error)}")
        detail = "; ".join(parts)
    return " ".join(str(detail).split())


def given(options: dict[str, object]) -> dict[str, Any]:
    """The options the user gave (the unset ones are ``None``) as a JSON body takes them:
    an enum as its value. What is left out, the server's defaults or preset fill in."""
    return {
        k: (v.value if isinstance(v, StrEnum) else v) for k, v in options.items() if v is not None
    }


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str, str | None]]:
    """``(event, data, id)`` for each event in the lines of a ``text/event-stream``."""
    event, data, event_id = "message", list[str](), None
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data), event_id
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


class Api:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.send(method, path, **kwargs)
        return None if response.status_code == 204 else self._json(response)

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The raw response (for bodies that are not JSON); errors as :class:`ApiError`."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ApiError(
                f"cannot reach the service at {self.url} (is it running? `mnist serve` starts one)"
            ) from None
        except httpx.TimeoutException:
            raise ApiError(f"the service at {self.url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ApiError(f"request to {self.url} failed: {exc}") from None
        if response.status_code >= 400:
            self._json(response)  # raises with the server's detail
        return response

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code == 401:
            raise ApiError(
                f"401 {_detail(response)}: pass --api-key or set MNIST_API_KEY"
            ) from None
        if response.status_code >= 400:
            raise ApiError(f"{response.status_code} {_detail(response)}")
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{self.url} did not answer with JSON: is it this service?") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def follow(
        self,
        job_id: str,
        on_event: Callable[[str, dict[str, Any]], None],
        retries: int = 5,
    ) -> dict[str, Any]:
        """Call ``on_event(event, data)`` for every event of the job's stream until its
        ``end`` event, whose data (the final job record) is returned."""
        last, failures = None, 0
        while True:
            headers: dict[str, str] = {"Last-Event-ID": last} if last else {}
            try:
                with self.http.stream(
                    "GET",
                    f"/jobs/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(30, read=None),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        self._json(response)
                    for event, raw, event_id in sse_events(response.iter_lines()):
                        data = json.loads(raw)
                        if event == "end":
                            on_event(event, data)
                            return data
                        if event == "error":
                            raise httpx.RemoteProtocolError(data.get("detail", "stream error"))
                        last = event_id or last
                        failures = 0
                        on_event(event, data)
            except httpx.ConnectError:
                if last is None and failures == 0:
                    raise ApiError(f"cannot reach the service at {self.url}") from None
            except httpx.HTTPError:
                pass
            failures += 1  # the stream ended early: reconnect and resume after ``last``
            if failures > retries:
                raise ApiError(f"lost the event stream of job {job_id} ({retries} retries)")
            time.sleep(min(2.0, 0.25 * 2**failures))


def api_of(ctx: typer.Context) -> Api:
    """The client the ``mnist`` callback made for this invocation."""
    api: Api = ctx.obj
    return api
