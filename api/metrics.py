"""``GET /metrics``: Prometheus text format (prometheus-client).

Two kinds of numbers:

- **This API process** (in-process counters; with several uvicorn workers, each
  has its own, as usual with Prometheus and one target per process):
  ``mnist_http_requests_total`` and ``mnist_http_request_duration_seconds`` per
  method and route *template* (``/jobs/{job_id}``, never a raw path; unmatched
  paths are ``<unmatched>``), ``mnist_predictions_total`` (images classified, per
  endpoint, alias served through and side of its split), ``mnist_shadow_dropped_total``
  (images a shadow candidate did not see: the queue was full), ``mnist_event_streams``
  (open ``/jobs/{id}/events`` streams),
  ``mnist_rejected_requests_total{reason}`` (requests refused at a limit, see
  :data:`REJECT_REASONS`), ``mnist_request_body_bytes_in_flight`` (what the
  ``MAX_BODY_BYTES_IN_FLIGHT`` budget holds), and the standard ``process_*`` metrics.
- **The whole service**, read from Redis at scrape time by :class:`JobsCollector`,
  so every API process reports the same values and the worker's training reaches
  Prometheus without a pushgateway: ``mnist_jobs{status}``, ``mnist_queue_depth``
  (messages waiting in the Celery queue), ``mnist_training_epochs_total`` and the
  histogram ``mnist_epoch_duration_seconds`` (from the history rows the worker
  writes after every epoch), ``mnist_models``, and ``mnist_redis_up``; input drift's
  ``mnist_input_drift_psi{model_id,feature}`` (api/drift_metrics.py).

Finished jobs never change, so the collector caches what it derived from them and
reads only new and active jobs at each scrape.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from uuid import UUID

import numpy as np
import redis
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.canary_metrics import SplitsCollector
from api.deps import require_key_for_metrics
from api.drift_metrics import DriftCollector
from api.sweep_metrics import SweepsCollector
from shared.schemas.common import ErrorBody
from shared.schemas.jobs import EpochRecord, JobStatus
from shared.services import Services

log = logging.getLogger(__name__)

EPOCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the epoch-duration histogram: tiny test runs to the
full training set with a wide hidden layer."""
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
UNMATCHED = "<unmatched>"
REJECT_REASONS = {
    "body": "413: a body above MAX_BODY_BYTES (api/limits.py)",
    "body_timeout": "408: a body not received within BODY_TIMEOUT_SECONDS (api/limits.py)",
    "body_budget": "503: a body beyond MAX_BODY_BYTES_IN_FLIGHT of bodies held at once",
    "image_size": "413: an image above its byte, pixel or side limits (api/imaging.py)",
    "image_type": "415: an upload Pillow cannot read as an image",
    "job_memory": "422: a job whose estimated memory is above JOB_MEMORY_LIMIT_MB",
    "queue": "429: MAX_QUEUED_JOBS jobs queued already",
}
"""The ``reason`` label of ``mnist_rejected_requests_total``: every limit the app
itself sees. A request line or header above uvicorn's h11 limit (16 KiB) is refused
by the HTTP parser (400 and the connection closed) before any app code runs, so it
is not counted here; uvicorn logs "Invalid HTTP request received." for each."""

_current: ContextVar["Metrics | None"] = ContextVar("mnist_metrics", default=None)


@dataclass
class _JobFacts:
    """What one job contributed: its status, epochs done and epoch-duration histogram."""

    status: JobStatus
    rows: int = 0
    buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(EPOCH_BUCKETS) + 1))
    seconds: float = 0.0

    def add(self, rows: Iterable[EpochRecord]) -> None:
        for row in rows:
            self.buckets[np.searchsorted(EPOCH_BUCKETS, row.seconds)] += 1
            self.seconds += row.seconds
            self.rows += 1


class JobsCollector:
    """Service-wide numbers from the job records and history in Redis, per scrape, read
    through the stores' own read methods."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._facts: dict[UUID, _JobFacts] = {}
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; names are unique in this module

    def _refresh(self) -> None:
        """Bring the per-job facts up to date with Redis."""
        jobs = self.services.jobs
        ids = jobs.ids()
        for gone in set(self._facts) - set(ids):  # Redis lost or expired them
            del self._facts[gone]
        todo = [i for i in ids if i not in self._facts or not self._facts[i].status.finished]
        for start in range(0, len(todo), 200):
            chunk = todo[start : start + 200]
            wanted = [(i, self._facts[i].rows if i in self._facts else 0) for i in chunk]
            for job_id, (job, rows) in zip(chunk, jobs.progress_many(wanted), strict=True):
                if job is None:  # gone, or a record that does not read: not counted
                    self._facts.pop(job_id, None)
                    continue
                facts = self._facts.get(job_id)
                if facts is None or job.epoch < facts.rows:  # new, or a resumed run cut back
                    facts = _JobFacts(job.status)
                    rows = jobs.progress(job_id, 0)[1]
                facts.status = job.status
                facts.add(rows)
                self._facts[job_id] = facts

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("mnist_redis_up", "1 if Redis answered this scrape, else 0.")
        try:
            with self._lock:
                self._refresh()
                facts = list(self._facts.values())
            depth = self.services.queue.depth()
            models = self.services.registry.count()
            aliases = self.services.models.aliases.alias_histories()
        except redis.RedisError as exc:
            log.warning("metrics: redis unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        jobs = GaugeMetricFamily(
            "mnist_jobs", "Training jobs in Redis by status.", labels=["status"]
        )
        for status in JobStatus:
            jobs.add_metric([status.value], sum(f.status is status for f in facts))
        yield jobs
        yield GaugeMetricFamily(
            "mnist_queue_depth", "Messages waiting in the Celery training queue.", value=depth
        )
        yield GaugeMetricFamily("mnist_models", "Models in the registry.", value=models)
        serving = InfoMetricFamily("mnist_alias", "The model each alias points at.")
        changes = CounterMetricFamily(
            "mnist_alias_changes",
            "Alias changes by alias and source (api, rollback, gate, canary: a promoted or "
            "aborted split), from the kept history.",
            labels=["alias", "source"],
        )
        for summary, history in aliases:
            serving.add_metric([], {"alias": summary.name, "model_id": str(summary.model_id)})
            for source in sorted({row.source.value for row in history}):
                count = sum(row.source.value == source for row in history)
                changes.add_metric([summary.name, source], count)
        yield serving
        yield changes
        yield CounterMetricFamily(
            "mnist_training_epochs",
            "Epochs trained, summed over the jobs in Redis (from their history rows).",
            value=sum(f.rows for f in facts),
        )
        counts = sum((f.buckets for f in facts), np.zeros(len(EPOCH_BUCKETS) + 1))
        cumulative = np.cumsum(counts)
        bounds = [*(floatToGoString(b) for b in EPOCH_BUCKETS), "+Inf"]
        yield HistogramMetricFamily(
            "mnist_epoch_duration_seconds",
            "Wall time of one training epoch, from the jobs' history rows.",
            buckets=[(b, float(c)) for b, c in zip(bounds, cumulative, strict=True)],
            sum_value=sum(f.seconds for f in facts),
        )


class Metrics:
    """The metrics of one app (its own registry, so several apps can live in a process)."""

    def __init__(
        self, services: Services, body_bytes_in_flight: Callable[[], float] = lambda: 0
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mnist_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mnist_http_request_duration_seconds",
            "Time to the end of the response, by method and route template.",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "mnist_predictions",
            "Images classified, by endpoint, the alias they were served through (empty: "
            "by model_id, or the newest model) and the side of its split that answered "
            "(primary, or canary).",
            ["endpoint", "alias", "variant"],
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "mnist_shadow_dropped",
            "Images a shadow candidate did not predict: this process's shadow queue was "
            "full (SHADOW_QUEUE_IMAGES), or the candidate could not be loaded.",
            registry=self.registry,
        )
        self.event_streams = Gauge(
            "mnist_event_streams", "Open /jobs/{id}/events streams.", registry=self.registry
        )
        self.rejected = Counter(
            "mnist_rejected_requests",
            "Requests refused at a limit, by reason: body (413), body_timeout (408), "
            "body_budget (503), image_size (413), image_type (415), job_memory (422), "
            "queue (429). Headers above the HTTP "
            "parser's 16 KiB limit are refused before the app and not counted.",
            ["reason"],
            registry=self.registry,
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)  # present (0) before the first refusal
        self.body_bytes = Gauge(
            "mnist_request_body_bytes_in_flight",
            "Bytes of request bodies above 16 KiB this process holds, counted against "
            "MAX_BODY_BYTES_IN_FLIGHT (api/limits.py).",
            registry=self.registry,
        )
        self.body_bytes.set_function(body_bytes_in_flight)
        for endpoint in ("/predict", "/predict/image"):
            self.predictions.labels(endpoint, "", "primary")  # 0 before the first prediction
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(JobsCollector(services))
        self.registry.register(SweepsCollector(services.sweeps))  # api/sweep_metrics.py
        self.registry.register(DriftCollector(services.drift))  # api/drift_metrics.py
        self.registry.register(SplitsCollector(services.models.splits))  # api/canary_metrics.py

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """The matched route's path template, a mount's prefix, or ``<unmatched>``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return path
    mount = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
    return f"{mount}/{{path}}" if mount else UNMATCHED


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (pure ASGI, so streamed
    responses pass straight through)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _current.set(self.metrics)
        status = 500
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            _current.reset(token)
            route = route_template(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - start)


def count_predictions(n: int, endpoint: str, alias: str | None, variant: str) -> None:
    """Called by the predict routes; a no-op outside a request of an app with metrics."""
    metrics = _current.get()
    if metrics is not None:
        metrics.predictions.labels(endpoint, alias or "", variant).inc(n)


def count_rejected(reason: str) -> None:
    """Called where a limit refuses a request (a key of :data:`REJECT_REASONS`); a
    no-op outside a request of an app with metrics."""
    metrics = _current.get()
    if metrics is not None:
        metrics.rejected.labels(reason).inc()


def current() -> "Metrics | None":
    """The metrics of the app serving the current request."""
    return _current.get()


router = APIRouter(tags=["health"], dependencies=[Depends(require_key_for_metrics)])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."},
        401: {"model": ErrorBody, "description": "PROTECT_METRICS is on; the key is missing."},
    },
)
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests and latency per route, jobs by status, queue depth,
    epochs trained and seconds per epoch (from the worker's records), predictions."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI) -> None:
    """Metrics for ``app``: ``app.state.metrics``, the middleware and ``GET /metrics``."""
    budget = getattr(app.state, "body_budget", None)  # api/limits.py's, when installed
    app.state.metrics = Metrics(app.state.services, lambda: budget.used if budget else 0)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(router)
