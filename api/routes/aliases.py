"""Aliases: named pointers at models (``production``, ``challenger``), with history.

Serving follows them: ``/predict`` without a model serves ``SERVING_ALIAS``. Each
change is announced before the call answers, so every API process serves the new
target on its next request.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Response
from starlette.concurrency import run_in_threadpool

from api.deps import RegistryDep, StoreDep, require_api_key
from api.errors import REDIS_DOWN
from shared.registry import AliasNotFound, ModelNotFound, NoRollback
from shared.schemas import ALIAS_PATTERN, Alias, AliasList, AliasUpdate, ErrorBody
from shared.store import ModelFileError

router = APIRouter(prefix="/aliases", tags=["aliases"], responses=REDIS_DOWN)

Name = Annotated[str, Path(pattern=ALIAS_PATTERN, description="`^[a-z][a-z0-9_-]{0,31}$`")]
UNKNOWN: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such alias."}
}
KEY: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "API_KEY is set and was not given."}
}


@router.get("", response_model=AliasList)
def list_aliases(registry: RegistryDep) -> AliasList:
    return AliasList(items=registry.list_aliases())


@router.get("/{name}", response_model=Alias, responses=UNKNOWN)
def get_alias(name: Name, registry: RegistryDep) -> Alias:
    """The alias's target and its history, newest first."""
    alias = registry.get_alias(name)
    if alias is None:
        raise HTTPException(404, f"alias {name} not found")
    return alias


@router.put(
    "/{name}",
    response_model=Alias,
    dependencies=[Depends(require_api_key)],
    responses={
        **KEY,
        404: {"model": ErrorBody, "description": "No such model."},
        409: {"model": ErrorBody, "description": "The model's file fails its integrity check."},
    },
)
async def set_alias(
    name: Name, update: AliasUpdate, registry: RegistryDep, store: StoreDep
) -> Alias:
    """Point the alias at a model (creating the alias if needed)."""
    info = await run_in_threadpool(registry.get_model, update.model_id)
    if info is None or info.deleting:
        raise HTTPException(404, f"model {update.model_id} not found")
    try:
        await run_in_threadpool(store.load, info.id, info.sha256)
    except ModelFileError as exc:
        await run_in_threadpool(registry.mark_broken, info.id, str(exc))
        raise HTTPException(409, f"model {info.id} fails its integrity check") from None
    try:
        return await run_in_threadpool(registry.set_alias, name, info.id, reason=update.reason)
    except ModelNotFound:
        raise HTTPException(404, f"model {update.model_id} not found") from None


@router.post(
    "/{name}/rollback",
    response_model=Alias,
    dependencies=[Depends(require_api_key)],
    responses={
        **UNKNOWN,
        **KEY,
        409: {"model": ErrorBody, "description": "No earlier target, or it is gone."},
    },
)
def rollback_alias(name: Name, registry: RegistryDep) -> Alias:
    """Point the alias back at the target it had before its last change."""
    try:
        return registry.rollback(name)
    except AliasNotFound:
        raise HTTPException(404, f"alias {name} not found") from None
    except NoRollback as exc:
        raise HTTPException(409, str(exc)) from None


@router.delete(
    "/{name}",
    status_code=204,
    dependencies=[Depends(require_api_key)],
    responses={**UNKNOWN, **KEY},
)
def delete_alias(name: Name, registry: RegistryDep) -> Response:
    try:
        registry.delete_alias(name)
    except AliasNotFound:
        raise HTTPException(404, f"alias {name} not found") from None
    return Response(status_code=204)
