"""The serving path, one object for ``/predict`` and ``/predict/image`` alike:
resolve ``model_id`` / ``alias`` / the default to a loaded, verified model, and predict.

A model whose file fails its check is marked broken in the registry (announced to
every API process), so default serving moves on to the next intact model while the
explicit id keeps its clear 503. An artifact store that does not answer is not the
model's fault: a request that needs to load a model then gets a 503 with
``Retry-After``, and models already in memory keep serving.

A request served through an alias that has a canary split goes to the candidate with
the split's probability (always the same side for the same ``X-Client-Id``); a shadow
split, and an explicit ``model_id``, leave it with the primary. A candidate that cannot
be loaded leaves the request with the primary too.
"""

import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from uuid import UUID

import numpy as np
from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from shared.artifacts.base import StoreUnavailable
from shared.ml import mlp
from shared.registry.canary import lands_on_canary
from shared.registry.files import LoadedModel, ModelFileError
from shared.registry.index import ModelIndex, UnknownAlias
from shared.registry.service import Models
from shared.registry.store import ModelRegistry
from shared.schemas.canary import Split, SplitMode, Variant
from shared.schemas.models import ModelInfo, ModelNews, NewsKind

STORE_RETRY_AFTER = "5"


def store_unavailable() -> HTTPException:
    """The 503 while the artifact store does not answer: a passing outage, so retry."""
    return HTTPException(
        503,
        "the model store is unavailable; try again shortly",
        headers={"Retry-After": STORE_RETRY_AFTER},
    )


class ModelCache:
    """A small LRU of verified models, keyed by id and checked against the registry's
    sha256 whenever the entry is read: an id deleted and imported again with other
    weights is loaded again, and a deletion's announcement evicts it at once."""

    def __init__(self, models: Models, size: int) -> None:
        self.models = models
        self.size = size
        self._models: OrderedDict[UUID, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.refused: dict[str, str] = {}
        """Models that failed to load in this process, by id, with the reason."""

    def cached(self, model_id: UUID) -> LoadedModel | None:
        """The model if it is in memory already: no need to read its registry entry."""
        with self._lock:
            model = self._models.get(model_id)
            if model is not None:
                self._models.move_to_end(model_id)
            return model

    def get(self, info: ModelInfo) -> LoadedModel:
        """The model, loaded and checked against the registry's sha256 if not in memory."""
        cached = self.cached(info.id)
        if cached is not None and cached.sha256 == info.sha256:
            return cached
        try:
            model = self.models.load(info)
        except ModelFileError as exc:
            self.refused[str(info.id)] = str(exc)
            raise
        self.refused.pop(str(info.id), None)
        model = LoadedModel(
            model.id, model.weights.astype(np.float32), model.meta, model.sha256, model.size_bytes
        )
        with self._lock:
            self._models[info.id] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model

    def evict(self, model_id: UUID) -> None:
        with self._lock:
            self._models.pop(model_id, None)

    def hear(self, news: ModelNews) -> None:
        """A model deleted or found broken is forgotten at once (the index's listener)."""
        if news.model_id is not None and news.kind in (NewsKind.deleted, NewsKind.broken):
            self.evict(news.model_id)


@dataclass(frozen=True)
class Served:
    model: LoadedModel
    alias: str | None
    variant: Variant = Variant.primary
    split: Split | None = None
    """The split the request went through (its alias's), if one runs."""


def on_canary(split: Split, client: str | None) -> bool:
    """Does this request go to a canary split's candidate? The same client id always
    lands on the same side of a split; a request without one, at random."""
    if split.mode is not SplitMode.canary or split.percent is None:
        return False
    if client is not None:
        return lands_on_canary(split.id, client, split.percent)
    return random.random() * 100 < split.percent


class Server:
    """Resolves what a request asks for and loads it; errors are HTTP errors."""

    def __init__(self, index: ModelIndex, registry: ModelRegistry, cache: ModelCache) -> None:
        self.index, self.registry, self.cache = index, registry, cache

    async def model(
        self, model_id: UUID | None = None, alias: str | None = None, client: str | None = None
    ) -> Served:
        """The model a request asks for, or the side of its alias's split it lands on
        (``client``: its ``X-Client-Id``)."""
        served = await self._resolve(model_id, alias)
        if model_id is not None or served.alias is None:
            return served
        split = await self.index.split(served.alias)
        if split is None or split.model_id == served.model.id:
            return served
        if on_canary(split, client):
            try:
                candidate = await self._resolve(split.model_id, None)
            except HTTPException:  # gone, broken or unreachable: the primary answers
                pass
            else:
                return Served(candidate.model, served.alias, Variant.canary, split)
        return Served(served.model, served.alias, Variant.primary, split)

    async def _resolve(self, model_id: UUID | None, alias: str | None) -> Served:
        explicit = model_id is not None or alias is not None
        fault = ""  # why the default this request tried last was refused
        for _ in range(3):  # a default found broken is marked, then the next one is tried
            try:
                resolved, via = await self.index.resolve(model_id, alias)
            except UnknownAlias:
                raise HTTPException(404, f"alias {alias} not found") from None
            if resolved is None:
                if model_id is not None:
                    raise HTTPException(404, f"model {model_id} not found")
                if alias is not None:
                    raise HTTPException(503, f"alias {alias} points at a model that is gone")
                if fault or (await self.index.serving()).fallback:  # models, none intact
                    raise HTTPException(503, f"no intact model to serve by default{fault}")
                raise HTTPException(503, "no trained model yet: train one with POST /jobs")
            cached = self.cache.cached(resolved)
            if cached is not None:
                return Served(cached, via)
            info = await self.index.get_model(resolved)
            if info is None:
                if explicit:
                    raise HTTPException(404, f"model {resolved} not found")
                continue
            try:
                loaded = await run_in_threadpool(self.cache.get, info)  # reads, hashes
            except StoreUnavailable:
                raise store_unavailable() from None
            except ModelFileError as exc:
                await run_in_threadpool(self.registry.mark_broken, resolved, str(exc))
                if explicit:
                    raise HTTPException(503, f"model {resolved}: {_kind(exc)}") from exc
                fault = f" (model {resolved}: {_kind(exc)})"
                continue
            if info.broken is not None:  # the file passes its check again
                await run_in_threadpool(self.registry.mark_broken, resolved, None)
            return Served(loaded, via)
        raise HTTPException(503, f"no intact model to serve by default{fault}")


def _kind(exc: ModelFileError) -> str:
    """What a client is told: the kind of fault, not the server's paths."""
    text = str(exc)
    for kind in ("integrity check failed", "file missing", "no checksum recorded"):
        if kind in text:
            return kind
    return "invalid model file"


def predict(model: LoadedModel, images: np.ndarray) -> np.ndarray:
    """Probabilities (n, 10) for 0..255 pixel rows (n, 784)."""
    x = np.asarray(images, dtype=np.float32) * np.float32(model.input_scale)
    return mlp.predict_proba(model.weights, x)
