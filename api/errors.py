"""Error responses: always JSON with a ``detail``, never a 500 for a client's mistake."""

import logging
import math
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

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


def _echo(value: Any) -> Any:
    """The offending input if it is a short JSON-safe scalar, else a short repr.

    NaN and Infinity are not JSON, and a 784-pixel list need not come back.
    """
    plain = value is None or isinstance(value, bool | int | str)
    finite = isinstance(value, float) and math.isfinite(value)
    if (plain or finite) and len(str(value)) <= MAX_ECHO:
        return value
    text = repr(value)
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": list(error.get("loc", ())),
            "msg": error.get("msg", ""),
            "type": error.get("type", ""),
            **({"input": _echo(error["input"])} if "input" in error else {}),
        }
        for error in exc.errors()
    ]


def install(app: FastAPI) -> None:
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
