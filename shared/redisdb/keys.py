"""Every Redis key and channel the service uses, and nothing else formats one.

All live under ``KEY_PREFIX`` (``mnist:`` by default), so that several instances
can share one Redis. :data:`LAYOUT` is the documented list; the table in
docs/operations.md is checked against it by a test.
"""

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

LAYOUT: dict[str, str] = {
    "job:<id>": "the job record (JSON of Job)",
    "job:<id>:history": "one EpochRecord per finished epoch (a list)",
    "job:<id>:lease": "held, with a TTL, by the one worker process training the job",
    "job:<id>:fence": "the job's fencing token: grows each time the job changes hands",
    "job:<id>:checkpoint": "the artifact key and epoch of the job's newest checkpoint (JSON)",
    "jobs": "sorted set of job ids, scored by creation time",
    "jobs:active": "set of the ids of queued and running jobs",
    "jobs:queued": "set of the ids of queued jobs (the MAX_QUEUED_JOBS count)",
    "idempotency:<sha256 of key>": "the job an Idempotency-Key created, for a day",
    "worker:<name>:stopping": "set while a worker shuts down warm",
    "model:<id>": "the model's ModelInfo (JSON)",
    "model:<id>:claim": "held, with a TTL, while an import writes the model with this id",
    "models": "sorted set of model ids, scored by when the registry received each",
    "aliases": "hash: alias name -> AliasSummary (JSON)",
    "alias:<name>:history": "the alias's AliasChange rows, newest first (a list)",
    "announcements": "pub/sub channel: a ModelNews each time a model, alias or split changes",
    "canaries": "hash: alias name -> its running canary or shadow split (JSON of Split)",
    "canary:<alias>:stats": "hash: the alias's split's counters, summed over the API "
    "processes ('split' names the split they count)",
    "job:<id>:feedback": "the correction ids a job froze at its start (JSON list)",
    "feedback:<id>": "a correction's FeedbackItem (JSON, no pixels)",
    "feedback:<id>:adding": "held, with a TTL, while one request writes this correction",
    "feedback": "sorted set of correction ids, scored by creation time",
    "feedback:label:<n>": "sorted set of the ids of corrections labelled n",
    "feedback:pairs": "hash: '<predicted>:<label>' -> count ('-' when no prediction was sent)",
    "feedback:indexed": "set once the index has been rebuilt from the corrections' store",
    "drift:<model id>": "the summaries of the last DRIFT_WINDOW inputs the model served "
    "(a list, oldest first: arrival time and the seven summaries, space-separated)",
    "drift:models": "set of the ids of models with a drift window",
    "sweep:<id>": "the sweep record (JSON of Sweep): request, trials, best",
    "sweeps": "sorted set of sweep ids, scored by creation time",
    "sweeps:active": "set of the ids of sweeps not yet settled (recovery tops them up)",
    "sweep:<id>:asking": "held, with a TTL, while one process asks Optuna for a trial",
    "sweep:<id>:optuna:*": "the sweep's Optuna journal (JournalRedisBackend's own keys)",
    "celery:": "prefix of Celery's own keys (broker queues, unacked messages)",
    "replicated": "a counter every confirmed write increments just before its WAIT",
}
"""Key patterns (after the prefix) and what each holds."""


_PLACEHOLDER = re.compile(r"<[^>]+>")


def _layout(pattern: str) -> str:
    if pattern not in LAYOUT:
        raise ValueError(f"{pattern!r} is not in LAYOUT: add it there (and to the docs)")
    return pattern


def _key(pattern: str) -> Callable[["Keys"], str]:
    """A :class:`Keys` method naming the :data:`LAYOUT` key ``pattern``."""
    name = _layout(pattern)
    return lambda keys: keys.prefix + name


def _key_of(pattern: str) -> Callable[["Keys", object], str]:
    """A :class:`Keys` method naming the :data:`LAYOUT` key ``pattern`` with its one
    ``<...>`` part filled by the method's argument."""
    before, after = _PLACEHOLDER.split(_layout(pattern))
    return lambda keys, value: f"{keys.prefix}{before}{value}{after}"


@dataclass(frozen=True)
class Keys:
    """The key scheme under one prefix: a method per :data:`LAYOUT` pattern."""

    prefix: str = "mnist:"

    # jobs
    job = _key_of("job:<id>")
    job_history = _key_of("job:<id>:history")
    job_lease = _key_of("job:<id>:lease")
    job_fence = _key_of("job:<id>:fence")
    job_checkpoint = _key_of("job:<id>:checkpoint")
    jobs = _key("jobs")
    jobs_active = _key("jobs:active")
    jobs_queued = _key("jobs:queued")
    worker_stopping = _key_of("worker:<name>:stopping")

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}idempotency:{hashlib.sha256(key.encode()).hexdigest()}"

    # models
    model = _key_of("model:<id>")
    model_claim = _key_of("model:<id>:claim")
    models = _key("models")
    aliases = _key("aliases")
    alias_history = _key_of("alias:<name>:history")
    announcements = _key("announcements")

    # canary and shadow splits (shared/registry/canary.py)
    canaries = _key("canaries")
    canary_stats = _key_of("canary:<alias>:stats")

    # corrections (shared/feedback/)
    job_feedback = _key_of("job:<id>:feedback")
    feedback_item = _key_of("feedback:<id>")
    feedback_adding = _key_of("feedback:<id>:adding")
    feedback_all = _key("feedback")
    feedback_label = _key_of("feedback:label:<n>")
    feedback_pairs = _key("feedback:pairs")
    feedback_indexed = _key("feedback:indexed")

    # input drift (shared/drift/)
    drift_window = _key_of("drift:<model id>")
    drift_models = _key("drift:models")

    # sweeps
    sweep = _key_of("sweep:<id>")
    sweeps = _key("sweeps")
    sweeps_active = _key("sweeps:active")
    sweep_asking = _key_of("sweep:<id>:asking")

    def sweep_optuna(self, sweep_id: object) -> str:
        """The prefix Optuna's JournalRedisBackend puts before its own key names."""
        return f"{self.prefix}sweep:{sweep_id}:optuna"

    # replication (shared/redisdb/client.py, confirm)
    replicated = _key("replicated")

    # celery
    celery_prefix = _key("celery:")

    def celery_queue(self, queue: str) -> str:
        return self.celery_prefix() + queue
