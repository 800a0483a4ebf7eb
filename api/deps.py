"""Dependencies the routes declare; the objects live on ``app.state`` (see main.py).

They are ``async def`` because they never block: FastAPI would otherwise run each
one in its thread pool, a hop that costs more than a prediction.
"""

import hmac
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, HTTPException, Query, Request

from api.serving import ModelCache, Server
from shared.config import Settings
from shared.jobstore import JobStore
from shared.model_index import ModelIndex
from shared.registry import ModelRegistry
from shared.store import ModelStore
from shared.sweeps import Sweeper


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def get_server(request: Request) -> Server:
    return request.app.state.server


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


async def get_model_index(request: Request) -> ModelIndex:
    return request.app.state.model_index


async def get_models(request: Request) -> ModelCache:
    return request.app.state.models


async def get_queue(request: Request) -> Celery:
    return request.app.state.queue


async def get_sweeps(request: Request) -> Sweeper:
    return request.app.state.sweeps


async def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    x_api_key: Annotated[
        str | None, Header(description="The API key, if the server has one.")
    ] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """With ``API_KEY`` set, the caller must present it (compared in constant time)."""
    check_api_key(settings, x_api_key, authorization)


async def require_api_key_for_predict(
    settings: Annotated[Settings, Depends(get_settings)],
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    if settings.protect_predict:
        check_api_key(settings, x_api_key, authorization)


async def require_api_key_for_metrics(
    settings: Annotated[Settings, Depends(get_settings)],
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """``/metrics`` is open by default (scrapers seldom send keys); ``PROTECT_METRICS``
    closes it, since job counts and request rates describe how the service is used."""
    if settings.protect_metrics:
        check_api_key(settings, x_api_key, authorization)


def check_api_key(settings: Settings, x_api_key: str | None, authorization: str | None) -> None:
    if settings.api_key is None:
        return
    given = x_api_key
    if given is None and authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    expected = settings.api_key.get_secret_value().encode()
    if given is None or not hmac.compare_digest(given.encode(), expected):
        raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})


SettingsDep = Annotated[Settings, Depends(get_settings)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
ServerDep = Annotated[Server, Depends(get_server)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
ModelsDep = Annotated[ModelCache, Depends(get_models)]
ModelIndexDep = Annotated[ModelIndex, Depends(get_model_index)]
QueueDep = Annotated[Celery, Depends(get_queue)]
SweepsDep = Annotated[Sweeper, Depends(get_sweeps)]


@dataclass(frozen=True)
class Page:
    """``?offset=&limit=`` of the list endpoints, newest first."""

    offset: int
    limit: int


async def get_page(
    offset: Annotated[int, Query(ge=0, le=10**9, description="Items to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Items to return.")] = 20,
) -> Page:
    return Page(offset, limit)


PageDep = Annotated[Page, Depends(get_page)]
