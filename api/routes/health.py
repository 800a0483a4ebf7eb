"""Liveness and readiness probes for orchestrators and compose healthchecks."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import RegistryDep
from shared.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=Health)
def livez() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(registry: RegistryDep) -> Health | JSONResponse:
    """Redis answers; 503 otherwise."""
    try:
        registry.ping()
    except Exception as exc:
        body = Health(status="unavailable", detail=f"redis: {exc}")
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(status="ok")
