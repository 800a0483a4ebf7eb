"""Error responses: always JSON with a ``detail``, never a 500 for a client's mistake."""

import logging
import math
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shared.redisdb.client import NotReplicated
from shared.schemas.common import ErrorBody

log = logging.getLogger(__name__)


class ValidationErrors(BaseModel):
    """A 422 from request validation: a list naming each field (see :func:`install`)."""

    detail: list[dict[str, Any]]


Responses = dict[int | str, dict[str, Any]]
"""A route's ``responses=``: what OpenAPI documents beside its success."""
T = TypeVar("T")


def errors(*parts: Mapping[int | str, str | dict[str, Any]]) -> Responses:
    """``responses=`` from tables merged in order, where a bare description stands for
    an :class:`ErrorBody` answer: every error of this API has that body."""
    return {
        code: {"model": ErrorBody, "description": doc} if isinstance(doc, str) else doc
        for part in parts
        for code, doc in part.items()
    }


BODY_ERRORS: Responses = {
    400: {"description": "The body is not decodable (e.g. invalid UTF-8)."},
    408: {"description": "The body did not arrive within BODY_TIMEOUT_SECONDS."},
    413: {"description": "The body is larger than MAX_BODY_BYTES."},
}
"""Documented on every route that reads a JSON body."""

REDIS_DOWN: Responses = {
    503: {"description": "Redis is unreachable; retry after the Retry-After header's seconds."}
}
"""Documented on every router that reads or writes Redis."""

NEEDS_KEY = errors({401: "API_KEY is set and was not given."})
"""Documented on every route behind ``require_api_key``."""
READ_KEY = errors({401: "PROTECT_PREDICT is set and no API key given."})
"""Documented on every route behind ``require_key_for_reads``."""


def found(value: T | None, detail: str) -> T:
    """``value``, or a 404 with ``detail`` when the store had nothing."""
    if value is None:
        raise HTTPException(404, detail)
    return value


class http_errors:  # lower case: it reads as a function, ``with http_errors(...)``
    """Answer the errors of the shared layer that a route expects with their HTTP status.

    ``with http_errors({AliasNotFound: (404, "alias x not found"), NoRollback: 409}):``
    a bare status answers the error's own text, and an error not listed passes. The
    answer says all the client needs, so the cause is not chained. A class, not a
    ``@contextmanager``: its ``__exit__`` never swallows, so type checkers know that a
    ``return`` inside the block ends the function.
    """

    def __init__(
        self, answers: Mapping[type[Exception] | tuple[type[Exception], ...], int | tuple[int, str]]
    ) -> None:
        self.answers = answers

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for kinds, answer in self.answers.items():
            if isinstance(exc, kinds):
                status, detail = answer if isinstance(answer, tuple) else (answer, str(exc))
                raise HTTPException(status, detail) from None


MAX_ECHO = 200
"""Longest ``input`` echoed back in a validation error, in characters."""


def _encodable(text: str) -> str:
    """``text`` itself if it can be sent as UTF-8, else with the offending code points escaped.

    JSON's ``\\ud800`` escape decodes to a lone UTF-16 surrogate, a Python ``str`` that
    UTF-8 cannot encode: echoed as is (as a value, a key in ``loc``, or inside a message)
    it would turn the 422 into a 500.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _echo(value: Any) -> Any:
    """The offending input if it is a short JSON-safe scalar, else a short repr.

    NaN and Infinity are not JSON, and a 784-pixel list need not come back.
    """
    plain = value is None or isinstance(value, bool | int | str)
    finite = isinstance(value, float) and math.isfinite(value)
    if (plain or finite) and len(str(value)) <= MAX_ECHO:
        return _encodable(value) if isinstance(value, str) else value
    text = _encodable(repr(value))
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."


def _loc_part(part: Any) -> Any:
    return _encodable(part) if isinstance(part, str) else part


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """The 422 ``detail``: every string in it encodable, whatever the client sent."""
    return [
        {
            "loc": [_loc_part(part) for part in error.get("loc", ())],
            "msg": _encodable(str(error.get("msg", ""))),
            "type": _encodable(str(error.get("type", ""))),
            **({"input": _echo(error["input"])} if "input" in error else {}),
        }
        for error in exc.errors()
    ]


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""The methods a 405's ``Allow`` can name (the app defines no others)."""


def allowed_methods(request: Request) -> list[str]:
    """Every method for which some route of the app fully matches this request's path.

    Starlette's own 405 names only the methods of the first route whose path matched,
    so ``GET /jobs`` and ``POST /jobs``, two routes, would answer ``Allow: POST``. Asking
    the routes themselves (``matches``, nested routers included) with each method
    keeps this right whatever routes are added.
    """
    routes = request.app.router.routes
    return [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def install(app: FastAPI) -> None:
    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        """FastAPI's usual JSON 405, with ``Allow`` listing every method of the path."""
        assert isinstance(exc, StarletteHTTPException)  # a status-code handler gets only these
        methods = allowed_methods(request)
        # A route that took this method and refused it itself (StaticFiles under a mount
        # matches any method) knows its methods better: keep its own Allow then.
        if methods and request.method not in methods:
            exc = StarletteHTTPException(405, exc.detail, headers={"Allow": ", ".join(methods)})
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": jsonable_encoder(validation_errors(exc))}, status_code=422)

    @app.exception_handler(redis.exceptions.OutOfMemoryError)
    async def redis_full(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.error("%s %s: redis is out of memory: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": "the job store (Redis) is full: nothing more can be written for now"},
            status_code=507,
        )

    @app.exception_handler(NotReplicated)
    async def not_replicated(request: Request, exc: NotReplicated) -> JSONResponse:
        """REDIS_MIN_REPLICAS: the write was not confirmed in time, so it was not kept
        (undone, or kept where a retry finds it again): retry."""
        log.warning("%s %s: not confirmed by the replicas: %s", request.method, request.url, exc)
        return JSONResponse(
            {"detail": "the write was not confirmed by Redis's replicas in time; try again"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(redis.RedisError)
    async def redis_unavailable(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("%s %s: redis error: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": "the job store (Redis) is unavailable, try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
