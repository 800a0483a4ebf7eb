"""The model registry, newest first."""

from uuid import UUID

from fastapi import APIRouter, HTTPException

from api.deps import PageDep, RegistryDep
from api.errors import REDIS_DOWN
from shared.schemas import ErrorBody, ModelInfo, ModelList

router = APIRouter(prefix="/models", tags=["models"], responses=REDIS_DOWN)


@router.get("", response_model=ModelList)
def list_models(registry: RegistryDep, page: PageDep) -> ModelList:
    items, total = registry.list_models(page.offset, page.limit)
    return ModelList(items=items, total=total, offset=page.offset, limit=page.limit)


@router.get("/{model_id}", response_model=ModelInfo, responses={404: {"model": ErrorBody}})
def get_model(model_id: UUID, registry: RegistryDep) -> ModelInfo:
    info = registry.get_model(model_id)
    if info is None:
        raise HTTPException(404, f"model {model_id} not found")
    return info
