"""Dependencies the routes declare; the objects live on ``app.state`` (see main.py).

They are ``async def`` because they never block: FastAPI would otherwise run each
one in its thread pool, a hop that costs more than a prediction.

Access (docs/operations.md "Access" has the table): with ``API_KEY`` set, every write
needs the key; ``PROTECT_PREDICT`` adds predictions and the reads of what is worth
protecting (model weights, users' drawings); ``PROTECT_METRICS`` adds ``/metrics``.
"""

import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, HTTPException, Query, Request
from pydantic import BaseModel

from api.canary import Traffic
from api.drift import DriftRecorder
from api.errors import NEEDS_KEY, errors
from api.serving import ModelCache, Server
from shared.config import Settings
from shared.feedback.corrections import Corrections
from shared.jobs.store import JobStore
from shared.registry.index import ModelIndex
from shared.registry.service import Models
from shared.registry.store import ModelRegistry
from shared.services import Services
from shared.submission import Submitter
from shared.sweeps.sweeper import Sweeper

L = TypeVar("L", bound=BaseModel)


def state(path: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency answering ``app.state.<path>`` (dotted: ``services.jobs``).

    Every object the routes need is built once at start-up and hung on ``app.state``;
    one factory, so a new one costs a line below and not another function.
    """
    get = attrgetter(path)

    async def dependency(request: Request) -> Any:
        return get(request.app.state)

    return dependency


ServicesDep = Annotated[Services, Depends(state("services"))]
SettingsDep = Annotated[Settings, Depends(state("services.settings"))]


def check_api_key(settings: Settings, x_api_key: str | None, authorization: str | None) -> None:
    """With ``API_KEY`` set, the caller must present it (compared in constant time)."""
    if settings.api_key is None:
        return
    given = x_api_key
    if given is None and authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    expected = settings.api_key.get_secret_value().encode()
    if given is None or not hmac.compare_digest(given.encode(), expected):
        raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})


def requires_key(applies: Callable[[Settings], bool]) -> Callable[..., Awaitable[None]]:
    """A dependency that checks the key when ``applies(settings)``."""

    async def dependency(
        settings: SettingsDep,
        x_api_key: Annotated[
            str | None, Header(description="The API key, if the server has one.")
        ] = None,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> None:
        if applies(settings):
            check_api_key(settings, x_api_key, authorization)

    return dependency


require_api_key = requires_key(lambda settings: True)
"""Every write: jobs, cancels, aliases, deletions, imports, sweeps, corrections."""
require_key_for_reads = requires_key(lambda settings: settings.protect_predict)
"""PROTECT_PREDICT: predictions, model weights (.npz, ONNX), users' corrections."""
require_key_for_metrics = requires_key(lambda settings: settings.protect_metrics)
"""PROTECT_METRICS: ``/metrics`` (open by default: scrapers seldom send keys)."""


def keyed(*responses: Mapping[int | str, str | dict[str, Any]]) -> dict[str, Any]:
    """The route arguments of a write: ``require_api_key`` and, documented with the route's
    own ``responses`` (as :func:`api.errors.errors` takes them), the 401 it answers."""
    return {"dependencies": [Depends(require_api_key)], "responses": errors(*responses, NEEDS_KEY)}


JobsDep = Annotated[JobStore, Depends(state("services.jobs"))]
RegistryDep = Annotated[ModelRegistry, Depends(state("services.registry"))]
ModelsDep = Annotated[Models, Depends(state("services.models"))]
SubmitDep = Annotated[Submitter, Depends(state("services.submit"))]
SweepsDep = Annotated[Sweeper, Depends(state("services.sweeps"))]
CorrectionsDep = Annotated[Corrections, Depends(state("services.corrections"))]
ServerDep = Annotated[Server, Depends(state("server"))]
CacheDep = Annotated[ModelCache, Depends(state("cache"))]
ModelIndexDep = Annotated[ModelIndex, Depends(state("model_index"))]
DriftDep = Annotated[DriftRecorder, Depends(state("drift"))]
TrafficDep = Annotated[Traffic, Depends(state("traffic"))]
ClientId = Annotated[
    str | None,
    Header(
        max_length=200,
        description="Who is asking (any stable string): the same client always lands on "
        "the same side of an alias's canary split.",
    ),
]
"""``X-Client-Id`` of the prediction routes."""


@dataclass(frozen=True)
class Page:
    """``?offset=&limit=`` of the list endpoints, newest first."""

    offset: int
    limit: int

    def listing(self, model: type[L], read: Callable[[int, int], tuple[Any, int]]) -> L:
        """This page of ``read(offset, limit)`` (its items and the total) as ``model``,
        the list endpoint's answer."""
        items, total = read(self.offset, self.limit)
        return model(items=items, total=total, offset=self.offset, limit=self.limit)


async def get_page(
    offset: Annotated[int, Query(ge=0, le=10**9, description="Items to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Items to return.")] = 20,
) -> Page:
    return Page(offset, limit)


PageDep = Annotated[Page, Depends(get_page)]
