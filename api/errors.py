"""Error responses: always JSON with a ``detail``, never a 500 for a client's mistake."""

import logging
import math
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)


class ValidationErrors(BaseModel):
    """A 422 from request validation: a list naming each field (see :func:`install`)."""

    detail: list[dict[str, Any]]


BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not decodable (e.g. invalid UTF-8)."},
    413: {"description": "The body is larger than MAX_BODY_BYTES."},
}
"""Documented on every route that reads a JSON body."""

REDIS_DOWN: dict[int | str, dict[str, Any]] = {
    503: {"description": "Redis is unreachable; retry after the Retry-After header's seconds."}
}
"""Documented on every router that reads or writes Redis."""

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

    @app.exception_handler(redis.RedisError)
    async def redis_unavailable(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("%s %s: redis error: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": "the job store (Redis) is unavailable, try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
