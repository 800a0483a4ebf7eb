"""``GET /models/{id}/drift``: what a model has been served lately against what it
learnt from (docs/lifecycle.md "Input drift")."""

from uuid import UUID

from fastapi import APIRouter, HTTPException

from api.deps import ServicesDep
from api.errors import REDIS_DOWN, errors
from api.serving import store_unavailable
from shared.artifacts.base import StoreUnavailable
from shared.data.mnist import MnistError
from shared.registry.files import ModelFileError
from shared.registry.store import ModelNotFound
from shared.schemas.models import DriftReport

router = APIRouter(prefix="/models", tags=["models"], responses=REDIS_DOWN)


@router.get(
    "/{model_id}/drift",
    response_model=DriftReport,
    responses=errors(
        {
            404: "No such model.",
            503: "The model has no reference profile yet and it cannot be computed now: MNIST "
            "is not in MNIST_DIR, the model's file fails its check, or the artifact store does "
            "not answer.",
        }
    ),
)
def model_drift(model_id: UUID, services: ServicesDep) -> DriftReport:
    """The last ``DRIFT_WINDOW`` inputs the model served, from every API process,
    against its reference profile: the population stability index of each summary,
    ``drifted`` when one is above ``DRIFT_PSI_THRESHOLD`` with at least
    ``DRIFT_MIN_SAMPLES`` inputs, ``since`` the arrival of the window's oldest input,
    and both histograms of each summary. A model without a profile (trained before
    profiles were kept) gets one computed from MNIST on this first call."""
    try:
        report = services.drift.report(model_id)
    except ModelNotFound:
        raise HTTPException(404, f"model {model_id} not found") from None
    except MnistError:
        raise HTTPException(
            503,
            f"model {model_id} has no reference profile and MNIST is not available in "
            "MNIST_DIR to compute one",
        ) from None
    except ModelFileError:
        raise HTTPException(
            503, f"model {model_id}: its file fails its check; no reference profile"
        ) from None
    except StoreUnavailable:
        raise store_unavailable() from None
    if report is None:  # not reached: report() computes a missing profile
        raise HTTPException(503, f"model {model_id} has no reference profile")
    return report
