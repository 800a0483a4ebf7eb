"""Dependencies the routes declare; the objects live on ``app.state`` (see main.py)."""

from typing import Annotated

from celery import Celery
from fastapi import Depends, Query, Request

from api.serving import ModelCache
from shared.config import Settings
from shared.registry import Registry
from shared.store import ModelStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_registry(request: Request) -> Registry:
    return request.app.state.registry


def get_store(request: Request) -> ModelStore:
    return request.app.state.store


def get_models(request: Request) -> ModelCache:
    return request.app.state.models


def get_queue(request: Request) -> Celery:
    return request.app.state.queue


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
ModelsDep = Annotated[ModelCache, Depends(get_models)]
QueueDep = Annotated[Celery, Depends(get_queue)]


class Page:
    """``?offset=&limit=`` of the list endpoints, newest first."""

    def __init__(
        self,
        offset: Annotated[int, Query(ge=0, description="Items to skip.")] = 0,
        limit: Annotated[int, Query(ge=1, le=100, description="Items to return.")] = 20,
    ) -> None:
        self.offset, self.limit = offset, limit


PageDep = Annotated[Page, Depends()]
