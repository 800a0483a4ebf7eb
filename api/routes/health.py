"""Liveness and readiness probes for orchestrators and compose healthchecks."""

import asyncio
import logging

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import CacheDep, ModelIndexDep, ServicesDep
from shared.artifacts.base import ArtifactError, StoreUnavailable
from shared.redisdb.client import EvictingRedis, check_eviction_async
from shared.schemas.models import Health
from shared.services import Services

log = logging.getLogger(__name__)

STORE_PROBE_SECONDS = 3.0

router = APIRouter(tags=["health"])


def _unavailable(detail: str) -> JSONResponse:
    body = Health(status="unavailable", detail=detail)
    return JSONResponse(body.model_dump(mode="json"), status_code=503)


@router.get("/livez", response_model=Health)
async def livez() -> Health:
    """The process is up (answered on the event loop: a busy thread pool cannot stall it)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(
    index: ModelIndexDep, cache: CacheDep, services: ServicesDep
) -> Health | JSONResponse:
    """Redis answers and keeps what it is given (503 otherwise, saying why: unreachable,
    or a maxmemory-policy that may evict); the artifact store answers; and which model
    serves by default. ``degraded`` when the default had to fall back past a broken or
    missing model, or the store does not answer (what is loaded or cached still serves)."""
    try:
        await index.ping()
        await check_eviction_async(index.redis)
        serving = await index.serving()
    except EvictingRedis as exc:
        return _unavailable(str(exc))
    except (redis.RedisError, OSError) as exc:  # the address stays in the log, not the answer
        log.warning("readyz: redis unreachable: %s", exc)
        return _unavailable("redis unreachable")
    store_ok = await _store_answers(services)
    return Health(
        status="degraded" if serving.fallback or not store_ok else "ok",
        detail=None if store_ok else StoreUnavailable.public,
        serving=serving,
        refused_models=dict(cache.refused),
        store="ok" if store_ok else "unavailable",
    )


async def _store_answers(services: Services) -> bool:
    """The artifact store answers within :data:`STORE_PROBE_SECONDS` (in a thread: the
    store's client is sync)."""
    try:
        await asyncio.wait_for(asyncio.to_thread(services.artifacts.check), STORE_PROBE_SECONDS)
    except (TimeoutError, ArtifactError, OSError) as exc:
        log.warning("readyz: the artifact store does not answer: %s", exc)
        return False
    return True
