"""The FastAPI app: ``uvicorn api.main:app``."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import errors, metrics, web
from api.limits import BodySizeLimit
from api.routes import (
    aliases,
    dataset,
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
from shared.config import Settings, get_settings
from shared.feedback import Corrections
from shared.jobstore import JobStore
from shared.keys import Keys
from shared.logs import configure_logging
from shared.model_index import ModelIndex
from shared.queue import TRAIN_TASK, make_celery
from shared.redis_conn import connect
from shared.registry import ModelRegistry
from shared.store import ModelStore
from shared.sweeps import Sweeper

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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.model_dir.mkdir(parents=True, exist_ok=True)
        try:
            app.state.registry.rebuild(app.state.store)
        except redis.RedisError as exc:
            log.warning("could not rebuild the model registry at start-up: %s", exc)
        try:
            app.state.feedback.rebuild()
        except redis.RedisError as exc:
            log.warning("could not rebuild the feedback index at start-up: %s", exc)
        if settings.api_key is None:
            log.warning("API_KEY is not set: anyone who can reach this API can queue jobs")
        else:
            predictions = "too" if settings.protect_predict else "not (PROTECT_PREDICT=false)"
            log.info("API key required for changes; for predictions %s", predictions)
        # redis.asyncio connections belong to the event loop that made them: this one
        index = app.state.model_index = ModelIndex.from_url(
            settings.redis_url, keys, settings.serving_alias
        )
        app.state.server = Server(index, app.state.registry, app.state.models)
        await _log_serving(index)
        index.follow()
        yield
        await index.aclose()
        client.close()

    app = FastAPI(
        title="mnist-service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    keys = Keys(settings.key_prefix)
    client = connect(settings.redis_url)
    app.state.jobs = JobStore(client, keys)
    app.state.registry = ModelRegistry(client, keys)
    app.state.store = ModelStore(settings.model_dir)
    app.state.models = ModelCache(app.state.store, settings.model_cache_size)
    app.state.feedback = Corrections.connect(
        client, keys, settings.feedback_root, settings.feedback_max
    )
    app.state.queue = make_celery(settings, main="api")
    app.state.sweeps = Sweeper(
        client,
        keys,
        settings.redis_url,
        send=lambda job_id: app.state.queue.send_task(
            TRAIN_TASK, args=[str(job_id)], task_id=str(job_id)
        ),
    )

    errors.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
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
        aliases,
        dataset,
        health,
        feedback,
    ):
        app.include_router(module.router)
    web.install(app)  # the page at / and its files under /static
    metrics.install(app)  # last: its middleware is the outermost, so it sees every request
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


app = create_app()
