"""Canary and shadow traffic on an alias: start or change a split, read it with its
statistics, abort it, promote its candidate (docs/lifecycle.md "Canary and shadow").

Each change is announced before the call answers, as an alias change is: every API
process routes its next request by it. A read first adds this process's own counts
to Redis, so what it answers includes every request this process has served.
"""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from api.deps import ModelsDep, TrafficDep, keyed
from api.errors import REDIS_DOWN, errors, found, http_errors
from shared.registry.canary import NoSplit, SameTarget
from shared.registry.store import AliasNotFound, ModelBroken, ModelNotFound
from shared.schemas.canary import CanaryRequest, SplitView
from shared.schemas.models import ALIAS_PATTERN, Alias

router = APIRouter(prefix="/aliases", tags=["aliases"], responses=REDIS_DOWN)

Name = Annotated[str, Path(pattern=ALIAS_PATTERN, description="`^[a-z][a-z0-9_-]{0,31}$`")]
NONE = errors({404: "No such alias, or no split on it."})


def no_split(name: str) -> str:
    return f"alias {name} has no canary or shadow split"


@router.put(
    "/{name}/canary",
    response_model=SplitView,
    **keyed(
        {
            404: "No such alias, or no such model.",
            409: "The model is broken (its file fails its check), or it is the alias's own target.",
            422: {"description": "percent outside 1..99 for a canary, or given with shadow."},
        },
    ),
)
def start_split(
    name: Name, request: CanaryRequest, models: ModelsDep, traffic: TrafficDep
) -> SplitView:
    """Start a canary (the candidate answers `percent`% of the requests served through
    the alias) or a shadow (the primary answers all; the candidate predicts the same
    inputs beside it), or change the running split. The same candidate keeps its split
    and statistics; another starts a new split."""
    traffic.flush()  # counts of the split being replaced, if any
    with http_errors(
        {
            AliasNotFound: (404, f"alias {name} not found"),
            ModelNotFound: (404, f"model {request.model_id} not found"),
            (ModelBroken, SameTarget): 409,
        }
    ):
        return models.start_split(name, request)


@router.get("/{name}/canary", response_model=SplitView, responses=NONE)
def get_split(name: Name, models: ModelsDep, traffic: TrafficDep) -> SplitView:
    """The running split and its statistics, summed over every API process (each adds
    its counts every CANARY_FLUSH_SECONDS)."""
    traffic.flush()
    return found(models.splits.view(name), no_split(name))


@router.delete(
    "/{name}/canary",
    response_model=SplitView,
    **keyed(NONE),
)
def abort_split(name: Name, models: ModelsDep, traffic: TrafficDep) -> SplitView:
    """End the split; the alias keeps its target. The alias's history gets a row
    (source `canary`, reason "aborted"); the answer is the split's final statistics."""
    traffic.flush()
    with http_errors({NoSplit: (404, no_split(name))}):
        return models.splits.abort(name)


@router.post(
    "/{name}/canary/promote",
    response_model=Alias,
    **keyed(NONE, {409: "The candidate is broken or gone."}),
)
def promote_split(name: Name, models: ModelsDep, traffic: TrafficDep) -> Alias:
    """Make the candidate the alias's target and end the split (a history row with
    source `canary`); the answer is the alias record."""
    traffic.flush()
    try:
        return models.promote_split(name)
    except NoSplit:
        raise HTTPException(404, no_split(name)) from None
    except ModelNotFound as exc:
        raise HTTPException(409, f"the candidate cannot serve: model {exc} is gone") from None
    except ModelBroken as exc:
        raise HTTPException(409, f"the candidate cannot serve: {exc}") from None
