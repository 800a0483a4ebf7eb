"""The FastAPI app: ``uvicorn api.main:app``."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import errors, metrics, web
from api.canary import Traffic
from api.drift import DriftRecorder
from api.limits import BodyBudget, BodyLimits
from api.routes import (
    aliases,
    canary,
    dataset,
    drift,
    events,
    feedback,
    health,
    images,
    jobs,
    models,
    predict,
    sweeps,
)
from api.serving import ModelCache, Server
from shared.artifacts.base import StoreUnavailable
from shared.config import InvalidSettings, Settings, get_settings
from shared.logs import configure_logging
from shared.redisdb.client import RedisTarget
from shared.registry.index import ModelIndex
from shared.services import Misconfigured, Services

log = logging.getLogger(__name__)

DESCRIPTION = """
Train the NumPy multi-layer perceptron of Raschka's *Python Machine Learning*
(ch. 12) on MNIST and classify handwritten digits with it.

`POST /jobs` queues training (answers at once), `GET /jobs/{id}` follows it,
`POST /predict` classifies 0..255 pixel images with the model the serving alias
(`production` by default) points at, or the newest model until one is promoted.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    services = Services.connect(settings)
    services.preflight()  # Misconfigured: no API that cannot work

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            services.models.rebuild()
        except (redis.RedisError, StoreUnavailable) as exc:  # the workers rebuild it later
            log.warning("could not rebuild the model registry at start-up: %s", exc)
        try:
            services.corrections.rebuild()
        except (redis.RedisError, StoreUnavailable) as exc:
            log.warning("could not rebuild the feedback index at start-up: %s", exc)
        if settings.api_key is None:
            log.warning("API_KEY is not set: anyone who can reach this API can queue jobs")
        else:
            predictions = "too" if settings.protect_predict else "not (PROTECT_PREDICT=false)"
            log.info("API key required for changes; for predictions %s", predictions)
        # redis.asyncio connections belong to the event loop that made them: this one
        index = app.state.model_index = ModelIndex.from_url(
            RedisTarget.of(settings), services.keys, settings.serving_alias
        )
        index.listeners.append(app.state.cache.hear)
        app.state.server = Server(index, services.registry, app.state.cache)
        await _log_serving(index)
        index.follow()
        app.state.drift.start()
        app.state.traffic.start()
        yield
        app.state.drift.stop()
        await asyncio.to_thread(app.state.traffic.stop)  # the counts left go to Redis
        await index.aclose()
        services.close()

    app = FastAPI(
        title="mnist-service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.services = services
    app.state.cache = ModelCache(services.models, settings.model_cache_size)
    app.state.drift = DriftRecorder(services.drift.windows)  # served inputs, to Redis
    app.state.traffic = Traffic(
        services.models.splits,
        services.registry,
        app.state.cache,
        settings.shadow_queue_images,
        settings.canary_flush_seconds,
    )

    errors.install(app)
    app.state.body_budget = BodyBudget(settings.body_bytes_in_flight)  # this process's
    app.add_middleware(
        BodyLimits,
        max_bytes=settings.max_body_bytes,
        timeout_seconds=settings.body_timeout_seconds,
        budget=app.state.body_budget,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization", "Idempotency-Key"],
        )
    for module in (
        jobs,
        events,
        sweeps,
        predict,
        images,
        models,
        drift,
        aliases,
        canary,
        dataset,
        health,
        feedback,
    ):
        app.include_router(module.router)
    web.install(app)  # the page at / and its files under /static
    metrics.install(app)  # last: its middleware is the outermost, so it sees every request
    app.state.traffic.on_dropped = app.state.metrics.shadow_dropped.inc
    return app


async def _log_serving(index: ModelIndex) -> None:
    """Say once at start what a request without a model gets."""
    try:
        serving = await index.serving()
    except redis.RedisError:
        return
    if serving.alias is not None:
        log.info("serving alias %s -> model %s by default", serving.alias, serving.model_id)
    elif serving.model_id is None:
        log.info("no model yet; once trained, the newest serves until one is promoted")
    else:
        log.info(
            "alias %s has no intact model: serving the newest intact model (%s) by default "
            "until one is promoted",
            index.serving_alias,
            serving.model_id,
        )


def _app() -> FastAPI:
    """``uvicorn api.main:app``: a process that cannot work as configured stops at once
    with one line saying why (a setting that cannot work, a misconfigured artifact
    store, an evicting Redis)."""
    try:
        return create_app()
    except (InvalidSettings, Misconfigured) as exc:
        raise SystemExit(f"error: {exc}") from None


app = _app()
