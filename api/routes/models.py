"""The model registry: list, cards, delete, download (npz, ONNX), import."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import ModelsDep, PageDep, RegistryDep, keyed, require_key_for_reads
from api.errors import READ_KEY, REDIS_DOWN, ValidationErrors, errors, http_errors
from shared.ml import onnx_export
from shared.registry.files import InvalidModel, LoadedModel, ModelFileError, ModelTooLarge
from shared.registry.service import ImportRefused, Models
from shared.registry.store import IdTaken, ModelInUse, ModelNotFound
from shared.schemas.common import ErrorBody
from shared.schemas.models import ModelInfo, ModelList

router = APIRouter(prefix="/models", tags=["models"], responses=REDIS_DOWN)

UNKNOWN = errors({404: "No such model."})
BROKEN = errors({503: "The model's file fails its integrity check."})
NPZ = "application/octet-stream"
ONNX = "application/onnx"


@router.get("", response_model=ModelList)
def list_models(registry: RegistryDep, page: PageDep) -> ModelList:
    """Model summaries, newest first, each with the aliases pointing at it."""
    return page.listing(ModelList, registry.list_models)


@router.get("/{model_id}", response_model=ModelInfo, responses=UNKNOWN)
def get_model(model_id: UUID, registry: RegistryDep) -> ModelInfo:
    """The whole model card: metadata, file facts, aliases, confusion matrix, errors."""
    return _card(registry, model_id)


@router.delete(
    "/{model_id}",
    status_code=204,
    **keyed(UNKNOWN, {409: "Aliases use it, or an active job starts from it."}),
)
def delete_model(model_id: UUID, models: ModelsDep) -> Response:
    """Remove the model's files, then its registry entry; refused while an alias points
    at it (the detail names the aliases) or a queued or running job starts from it."""
    with http_errors({ModelNotFound: (404, f"model {model_id} not found"), ModelInUse: 409}):
        models.delete(model_id)
    return Response(status_code=204)


@router.get(
    "/{model_id}/download",
    response_class=Response,
    dependencies=[Depends(require_key_for_reads)],
    responses={
        **UNKNOWN,
        **BROKEN,
        **READ_KEY,
        200: {"content": {NPZ: {}}, "description": "The .npz."},
    },
)
def download_model(model_id: UUID, registry: RegistryDep, models: ModelsDep) -> Response:
    """The ``.npz`` exactly as stored; its sha256 is the card's ``sha256`` (and the ETag)."""
    info = _card(registry, model_id)
    payload = _verified(models, info)
    return Response(
        payload,
        media_type=NPZ,
        headers={
            # a UUID and ".npz" are token characters: no quotes needed
            "Content-Disposition": f"attachment; filename={model_id}.npz",
            "ETag": info.sha256,  # the card's sha256, as is
        },
    )


@router.get(
    "/{model_id}/onnx",
    response_class=Response,
    dependencies=[Depends(require_key_for_reads)],
    responses={**UNKNOWN, **BROKEN, **READ_KEY, 200: {"content": {ONNX: {}}}},
)
def export_onnx(model_id: UUID, registry: RegistryDep, models: ModelsDep) -> Response:
    """The model as ONNX: float32 ``[N, 784]`` pixels 0..255 in, ``[N, 10]`` normalised
    probabilities out, as ``/predict`` answers them."""
    info = _card(registry, model_id)
    model = _loaded(models, info)
    payload = onnx_export.to_onnx(
        model.weights,
        model.input_scale,
        model_id=model_id,
        sha256=info.sha256,
        test_accuracy=info.test_accuracy,
    )
    return Response(
        payload,
        media_type=ONNX,
        headers={"Content-Disposition": f"attachment; filename={model_id}.onnx"},
    )


@router.post(
    "",
    status_code=201,
    response_model=ModelInfo,
    **keyed(
        {
            409: "A job, a model or an import has this id.",
            413: "The file declares more than a model may.",
            422: {
                "model": ErrorBody | ValidationErrors,
                "description": "Not a valid model file (the reason), or an invalid query field.",
            },
        }
    ),
    openapi_extra={
        "requestBody": {
            "content": {
                NPZ: {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
            "required": True,
        }
    },
)
async def import_model(
    request: Request,
    models: ModelsDep,
    source: Annotated[
        str | None, Query(max_length=500, description="Where it comes from, recorded.")
    ] = None,
) -> ModelInfo:
    """Import an exported ``.npz`` (the body, or a multipart ``file``); it keeps its id
    (its job's id), claimed atomically. It is validated like every model file, sizes
    first, before it is written."""
    payload = await _upload(request)
    try:
        return await run_in_threadpool(models.import_model, payload, source or "upload")
    except ModelTooLarge as exc:
        raise HTTPException(413, f"not an importable model file: {exc}") from None
    except (InvalidModel, ImportRefused) as exc:
        raise HTTPException(422, f"not a valid model file: {exc}") from None
    except IdTaken as exc:
        raise HTTPException(409, str(exc)) from None


async def _upload(request: Request) -> bytes:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise HTTPException(422, "send the model as the multipart field 'file'")
        return await file.read()
    body = await request.body()
    if not body:
        raise HTTPException(422, "send the model's .npz bytes as the body")
    return body


def _card(registry: RegistryDep, model_id: UUID) -> ModelInfo:
    info = registry.get_model(model_id)
    if info is None or info.deleting:
        raise HTTPException(404, f"model {model_id} not found")
    return info


def _verified(models: Models, info: ModelInfo) -> bytes:
    try:
        return models.files.read_verified(info.id, info.sha256)
    except ModelFileError as exc:
        raise HTTPException(503, f"model {info.id}: file fails its integrity check") from exc


def _loaded(models: Models, info: ModelInfo) -> LoadedModel:
    try:
        return models.load(info)
    except ModelFileError as exc:
        raise HTTPException(503, f"model {info.id}: file fails its integrity check") from exc
