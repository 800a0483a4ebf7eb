"""Everything a process of the service works with, built once from the settings: the
one place that wires stores, clients and services together (the API adds its serving
objects, the worker its training; neither builds a store itself).
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import redis
from celery import Celery

from shared.artifacts import open_store
from shared.artifacts.base import (
    ArtifactStore,
    Prefixed,
    StoreMisconfigured,
    StoreUnavailable,
)
from shared.artifacts.cache import VerifiedCache
from shared.artifacts.local import LocalStore
from shared.config import Settings
from shared.data import mnist
from shared.drift.monitor import DriftMonitor
from shared.drift.windows import DriftWindows
from shared.feedback.corrections import Corrections
from shared.feedback.files import FeedbackFiles
from shared.feedback.index import FeedbackIndex
from shared.jobs.checkpoints import Checkpoints
from shared.jobs.leases import Leases
from shared.jobs.queue import TrainingQueue, make_celery
from shared.jobs.store import JobStore
from shared.redisdb.client import (
    API_RETRIES,
    EvictingRedis,
    RedisTarget,
    Replication,
    check_eviction,
    connect,
)
from shared.redisdb.keys import Keys
from shared.registry.aliases import Aliases
from shared.registry.files import ModelFiles
from shared.registry.service import Models
from shared.registry.store import ModelRegistry
from shared.submission import Submitter
from shared.sweeps.store import SweepStore
from shared.sweeps.study import Studies
from shared.sweeps.sweeper import Sweeper

log = logging.getLogger(__name__)

FEEDBACK_PREFIX = "feedback/"


class Misconfigured(Exception):
    """The process cannot work as configured: it refuses to start, with this line."""


def feedback_store(settings: Settings, artifacts: ArtifactStore) -> ArtifactStore:
    """Corrections go to ``FEEDBACK_DIR`` when it is set, else beside the models in the
    artifact store (``feedback/``: today's ``MODEL_DIR/feedback`` by default)."""
    if settings.feedback_dir is not None:
        return LocalStore(Path(settings.feedback_dir))
    return Prefixed(artifacts, FEEDBACK_PREFIX)


@dataclass(frozen=True)
class Services:
    settings: Settings
    redis: redis.Redis
    keys: Keys
    artifacts: ArtifactStore
    jobs: JobStore
    leases: Leases
    checkpoints: Checkpoints
    registry: ModelRegistry
    models: Models
    corrections: Corrections
    queue: TrainingQueue
    submit: Submitter
    sweeps: Sweeper
    drift: DriftMonitor

    @property
    def feedback_files(self) -> FeedbackFiles:
        return self.corrections.files

    @classmethod
    def connect(
        cls, settings: Settings, retries: int = API_RETRIES, celery: Celery | None = None
    ) -> "Services":
        """Clients whose commands retry ``retries`` times with backoff (an API request
        fails fast; a training job outlasts a Redis restart, or a replica's, waiting as
        long for a write to be confirmed). ``celery``: the process's own Celery app, if
        it has one (the worker's), to send with."""
        target = RedisTarget.of(settings)
        client = connect(target, retries=retries)
        replication = Replication.of(settings, retries=0 if retries <= API_RETRIES else retries)
        keys = Keys(settings.key_prefix)
        artifacts = open_store(
            settings.artifacts, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region
        )
        local = isinstance(artifacts, LocalStore)
        cache = None if local else VerifiedCache(settings.cache_root)
        jobs = JobStore(client, keys, replication)
        registry = ModelRegistry(client, keys, replication)
        models = Models(registry, Aliases(registry), ModelFiles(artifacts, cache))
        queue = TrainingQueue(celery or make_celery(settings, main="api"), client, keys)
        submit = Submitter(jobs, models, queue, settings)
        corrections = Corrections(
            FeedbackFiles(feedback_store(settings, artifacts)),
            FeedbackIndex(client, keys, replication),
            settings.feedback_max,
        )
        return cls(
            settings=settings,
            redis=client,
            keys=keys,
            artifacts=artifacts,
            jobs=jobs,
            leases=Leases(client, keys),
            checkpoints=Checkpoints(artifacts, client, keys),
            registry=registry,
            models=models,
            corrections=corrections,
            queue=queue,
            submit=submit,
            sweeps=Sweeper(
                SweepStore(client, keys),
                Studies(client, keys, connect(target, retries=retries, decode=False)),
                submit,
            ),
            drift=DriftMonitor(
                DriftWindows(client, keys, settings.drift_window),
                models,
                lambda: mnist.load_once(settings.mnist_dir),
                settings.drift_psi_threshold,
                settings.drift_min_samples,
            ),
        )

    def preflight(self) -> None:
        """At start: refuse (:class:`Misconfigured`, one line saying why) an artifact store
        that cannot work as configured (wrong credentials, no such bucket) or a Redis
        that may evict keys. Either being away for now is not a reason to refuse: the
        process starts, says so in ``/readyz``, and works once they answer."""
        try:
            self.artifacts.check()
        except StoreMisconfigured as exc:
            raise Misconfigured(str(exc)) from None
        except StoreUnavailable:
            log.warning("the artifact store does not answer at start; carrying on")
        try:
            check_eviction(self.redis)
        except EvictingRedis as exc:
            raise Misconfigured(str(exc)) from None
        except redis.RedisError:
            log.warning("Redis does not answer at start; carrying on")

    def close(self) -> None:
        self.redis.close()
        self.sweeps.studies.journal.close()
