"""Liveness and readiness probes for orchestrators and compose healthchecks."""

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ModelsDep, RegistryDep
from shared.schemas import Health

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=Health)
async def livez() -> Health:
    """The process is up (answered on the event loop: a busy thread pool cannot stall it)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(registry: RegistryDep, models: ModelsDep) -> Health | JSONResponse:
    """Redis answers; 503 otherwise. Lists models refused for failing their integrity check."""
    try:
        registry.ping()
    except Exception as exc:  # the address stays in the log, not in the answer
        log.warning("readyz: redis unreachable: %s", exc)
        body = Health(status="unavailable", detail="redis unreachable")
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    return Health(status="ok", refused_models=dict(models.refused))
