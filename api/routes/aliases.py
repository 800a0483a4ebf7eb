"""Aliases: named pointers at models (``production``, ``challenger``), with history.

Serving follows them: ``/predict`` without a model serves ``SERVING_ALIAS``. Each
change is announced before the call answers, so every API process serves the new
target on its next request.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Response

from api.deps import ModelsDep, keyed
from api.errors import REDIS_DOWN, errors, found, http_errors
from shared.registry.store import AliasNotFound, ModelBroken, ModelNotFound, NoRollback
from shared.schemas.models import ALIAS_PATTERN, Alias, AliasList, AliasUpdate

router = APIRouter(prefix="/aliases", tags=["aliases"], responses=REDIS_DOWN)

Name = Annotated[str, Path(pattern=ALIAS_PATTERN, description="`^[a-z][a-z0-9_-]{0,31}$`")]
UNKNOWN = errors({404: "No such alias."})


@router.get("", response_model=AliasList)
def list_aliases(models: ModelsDep) -> AliasList:
    return AliasList(items=models.aliases.list_aliases())


@router.get("/{name}", response_model=Alias, responses=UNKNOWN)
def get_alias(name: Name, models: ModelsDep) -> Alias:
    """The alias's target and its history, newest first."""
    return found(models.aliases.get_alias(name), f"alias {name} not found")


@router.put(
    "/{name}",
    response_model=Alias,
    **keyed(
        {404: "No such model.", 409: "The model is broken (its file fails its check)."},
    ),
)
def set_alias(name: Name, update: AliasUpdate, models: ModelsDep) -> Alias:
    """Point the alias at a model (creating the alias if needed)."""
    with http_errors(
        {ModelNotFound: (404, f"model {update.model_id} not found"), ModelBroken: 409}
    ):
        return models.set_alias(name, update.model_id, reason=update.reason)


@router.post(
    "/{name}/rollback",
    response_model=Alias,
    **keyed(UNKNOWN, {409: "No earlier target, it is gone, or broken."}),
)
def rollback_alias(name: Name, models: ModelsDep) -> Alias:
    """Point the alias back at the target it had before its last change."""
    with http_errors(
        {AliasNotFound: (404, f"alias {name} not found"), (NoRollback, ModelBroken): 409}
    ):
        return models.rollback(name)


@router.delete(
    "/{name}",
    status_code=204,
    **keyed(UNKNOWN),
)
def delete_alias(name: Name, models: ModelsDep) -> Response:
    with http_errors({AliasNotFound: (404, f"alias {name} not found")}):
        models.aliases.delete_alias(name)
    return Response(status_code=204)
