"""Every Redis key and channel the service uses, and nothing else formats one.

All live under ``KEY_PREFIX`` (``mnist:`` by default), so that several instances
can share one Redis. :data:`LAYOUT` is the documented list; the table in
docs/operations.md is checked against it by a test.
"""

import hashlib
from dataclasses import dataclass

LAYOUT: dict[str, str] = {
    "job:<id>": "the job record (JSON of Job)",
    "job:<id>:history": "one EpochRecord per finished epoch (a list)",
    "job:<id>:lease": "held, with a TTL, by the one worker process training the job",
    "jobs": "sorted set of job ids, scored by creation time",
    "jobs:active": "set of the ids of queued and running jobs",
    "jobs:queued": "set of the ids of queued jobs (the MAX_QUEUED_JOBS count)",
    "idempotency:<sha256 of key>": "the job an Idempotency-Key created, for a day",
    "worker:<name>:stopping": "set while a worker shuts down warm",
    "model:<id>": "the model's ModelInfo (JSON)",
    "models": "sorted set of model ids, scored by creation time",
    "aliases": "hash: alias name -> AliasSummary (JSON)",
    "alias:<name>:history": "the alias's AliasChange rows, newest first (a list)",
    "announcements": "pub/sub channel: a ModelNews each time a model or alias changes",
    "job:<id>:feedback": "the correction ids a job froze at its start (JSON list)",
    "feedback:<id>": "a correction's FeedbackItem (JSON, no pixels)",
    "feedback": "sorted set of correction ids, scored by creation time",
    "feedback:label:<n>": "sorted set of the ids of corrections labelled n",
    "feedback:pairs": "hash: '<predicted>:<label>' -> count ('-' when no prediction was sent)",
    "feedback:indexed": "set once the index has been rebuilt from FEEDBACK_DIR",
    "sweep:<id>": "the sweep record (JSON of Sweep): request, trials, best",
    "sweeps": "sorted set of sweep ids, scored by creation time",
    "sweeps:active": "set of the ids of sweeps not yet settled (recovery tops them up)",
    "sweep:<id>:asking": "held, with a TTL, while one process asks Optuna for a trial",
    "sweep:<id>:optuna:*": "the sweep's Optuna journal (JournalRedisBackend's own keys)",
    "celery:": "prefix of Celery's own keys (broker queues, unacked messages)",
}
"""Key patterns (after the prefix) and what each holds."""


@dataclass(frozen=True)
class Keys:
    """The key scheme under one prefix."""

    prefix: str = "mnist:"

    def _k(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    # jobs
    def job(self, job_id: object) -> str:
        return self._k("job", job_id)

    def job_history(self, job_id: object) -> str:
        return self._k("job", job_id, "history")

    def job_lease(self, job_id: object) -> str:
        return self._k("job", job_id, "lease")

    def jobs(self) -> str:
        return self._k("jobs")

    def jobs_active(self) -> str:
        return self._k("jobs", "active")

    def jobs_queued(self) -> str:
        return self._k("jobs", "queued")

    def idempotency(self, key: str) -> str:
        return self._k("idempotency", hashlib.sha256(key.encode()).hexdigest())

    def worker_stopping(self, worker: str) -> str:
        return self._k("worker", worker, "stopping")

    # models
    def model(self, model_id: object) -> str:
        return self._k("model", model_id)

    def models(self) -> str:
        return self._k("models")

    def aliases(self) -> str:
        return self._k("aliases")

    def alias_history(self, name: str) -> str:
        return self._k("alias", name, "history")

    def announcements(self) -> str:
        return self._k("announcements")

    def job_feedback(self, job_id: object) -> str:
        return self._k("job", job_id, "feedback")

    # corrections (shared/feedback.py)
    def feedback_item(self, feedback_id: object) -> str:
        return self._k("feedback", feedback_id)

    def feedback_all(self) -> str:
        return self._k("feedback")

    def feedback_label(self, label: int) -> str:
        return self._k("feedback", "label", label)

    def feedback_pairs(self) -> str:
        return self._k("feedback", "pairs")

    def feedback_indexed(self) -> str:
        return self._k("feedback", "indexed")

    # sweeps
    def sweep(self, sweep_id: object) -> str:
        return self._k("sweep", sweep_id)

    def sweeps(self) -> str:
        return self._k("sweeps")

    def sweeps_active(self) -> str:
        return self._k("sweeps", "active")

    def sweep_asking(self, sweep_id: object) -> str:
        return self._k("sweep", sweep_id, "asking")

    def sweep_optuna(self, sweep_id: object) -> str:
        """The prefix Optuna's JournalRedisBackend puts before its own key names."""
        return self._k("sweep", sweep_id, "optuna")

    # celery
    def celery_prefix(self) -> str:
        return self._k("celery:")

    def celery_queue(self, queue: str) -> str:
        return self.celery_prefix() + queue
