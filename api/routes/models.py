"""The model registry: list, cards, delete, download (npz, ONNX), import."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import JobsDep, PageDep, RegistryDep, StoreDep, require_api_key
from api.errors import REDIS_DOWN, ValidationErrors
from shared import onnx_export
from shared.registry import ModelInUse, ModelNotFound, model_info
from shared.schemas import ErrorBody, ModelInfo, ModelList, utcnow
from shared.store import InvalidModel, LoadedModel, ModelFileError, ModelStore, parse_model

router = APIRouter(prefix="/models", tags=["models"], responses=REDIS_DOWN)

UNKNOWN: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such model."}
}
KEY: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "API_KEY is set and was not given."}
}
BROKEN: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "The model's file fails its integrity check."}
}
NPZ = "application/octet-stream"
ONNX = "application/onnx"


@router.get("", response_model=ModelList)
def list_models(registry: RegistryDep, page: PageDep) -> ModelList:
    """Model summaries, newest first, each with the aliases pointing at it."""
    items, total = registry.list_models(page.offset, page.limit)
    return ModelList(items=items, total=total, offset=page.offset, limit=page.limit)


@router.get("/{model_id}", response_model=ModelInfo, responses=UNKNOWN)
def get_model(model_id: UUID, registry: RegistryDep) -> ModelInfo:
    """The whole model card: metadata, file facts, aliases, confusion matrix, errors."""
    return _card(registry, model_id)


@router.delete(
    "/{model_id}",
    status_code=204,
    dependencies=[Depends(require_api_key)],
    responses={
        **UNKNOWN,
        **KEY,
        409: {
            "model": ErrorBody,
            "description": "Aliases use it, or an active job starts from it.",
        },
    },
)
def delete_model(model_id: UUID, registry: RegistryDep, store: StoreDep, jobs: JobsDep) -> Response:
    """Remove the model's files, then its registry entry; refused while an alias points
    at it (the detail names the aliases) or a queued or running job starts from it."""
    starting = [str(job.id) for job in jobs.active() if job.init_model_id == model_id]
    if starting:
        raise HTTPException(
            409, f"model {model_id} is where job(s) {', '.join(starting)} start from"
        )
    try:
        registry.delete_model(model_id, store)
    except ModelNotFound:
        raise HTTPException(404, f"model {model_id} not found") from None
    except ModelInUse as exc:
        raise HTTPException(409, str(exc)) from None
    return Response(status_code=204)


@router.get(
    "/{model_id}/download",
    response_class=Response,
    responses={**UNKNOWN, **BROKEN, 200: {"content": {NPZ: {}}, "description": "The .npz."}},
)
def download_model(model_id: UUID, registry: RegistryDep, store: StoreDep) -> Response:
    """The ``.npz`` exactly as stored; its sha256 is the card's ``sha256`` (and the ETag)."""
    info = _card(registry, model_id)
    payload = _verified(store, info)
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
    responses={**UNKNOWN, **BROKEN, 200: {"content": {ONNX: {}}}},
)
def export_onnx(model_id: UUID, registry: RegistryDep, store: StoreDep) -> Response:
    """The model as ONNX: float32 ``[N, 784]`` pixels 0..255 in, ``[N, 10]`` normalised
    probabilities out, as ``/predict`` answers them."""
    info = _card(registry, model_id)
    model = _loaded(store, info)
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
    dependencies=[Depends(require_api_key)],
    responses={
        **KEY,
        409: {"model": ErrorBody, "description": "A model with this id exists."},
        422: {
            "model": ErrorBody | ValidationErrors,
            "description": "Not a valid model file (the reason), or an invalid query field.",
        },
    },
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
    registry: RegistryDep,
    store: StoreDep,
    source: Annotated[
        str | None, Query(max_length=500, description="Where it comes from, recorded.")
    ] = None,
) -> ModelInfo:
    """Import an exported ``.npz`` (the body, or a multipart ``file``); it keeps its id
    (its job's id). It is validated like every model file before it is written."""
    payload = await _upload(request)
    try:
        weights, meta = await run_in_threadpool(parse_model, payload)
    except InvalidModel as exc:
        raise HTTPException(422, f"not a valid model file: {exc}") from None
    if meta.job_id is None:
        raise HTTPException(422, "not a valid model file: its metadata has no job_id (its id)")
    model_id = meta.job_id
    if registry.get_model(model_id) is not None or store.recorded_sha256(model_id):
        raise HTTPException(409, f"model {model_id} exists already")
    digest, size = await run_in_threadpool(store.write, model_id, payload)
    info = model_info(
        LoadedModel(model_id, weights, meta, digest, size),
        imported_at=utcnow(),
        imported_from=source or "upload",
    )
    registry.put_model(info)
    return info


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


def _verified(store: ModelStore, info: ModelInfo) -> bytes:
    try:
        return store.read_verified(info.id, info.sha256)
    except ModelFileError as exc:
        raise HTTPException(503, f"model {info.id}: file fails its integrity check") from exc


def _loaded(store: ModelStore, info: ModelInfo) -> LoadedModel:
    try:
        return store.load(info.id, info.sha256)
    except ModelFileError as exc:
        raise HTTPException(503, f"model {info.id}: file fails its integrity check") from exc
