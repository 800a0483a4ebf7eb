"""Liveness and readiness probes for orchestrators and compose healthchecks."""

import logging

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ModelIndexDep, ModelsDep
from shared.schemas import Health

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=Health)
async def livez() -> Health:
    """The process is up (answered on the event loop: a busy thread pool cannot stall it)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(index: ModelIndexDep, models: ModelsDep) -> Health | JSONResponse:
    """Redis answers (503 otherwise), and which model serves by default: ``degraded``
    when the default had to fall back past a broken or missing model."""
    try:
        await index.ping()
        serving = await index.serving()
    except (redis.RedisError, OSError) as exc:  # the address stays in the log, not the answer
        log.warning("readyz: redis unreachable: %s", exc)
        body = Health(status="unavailable", detail="redis unreachable")
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    return Health(
        status="degraded" if serving.fallback else "ok",
        serving=serving,
        refused_models=dict(models.refused),
    )
