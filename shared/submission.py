"""Submitting a training job: a request becomes a checked :class:`Job`, recorded and
queued. The one path every job takes, whether a client sent ``POST /jobs`` or a sweep
started a trial, so that every job passes the same checks:

- the preset, then the request's own values; a fine-tune's parent resolved (a model id
  or an alias, to an id at submission, so a promotion meanwhile does not change what it
  starts from) and its architecture inherited;
- ``JOB_MEMORY_LIMIT_MB``: a job whose estimated peak memory in its worker is above it
  is refused (shared/ml/job_memory.py);
- ``MAX_QUEUED_JOBS``, the Idempotency-Key and the parent's existence, checked and
  written together by the job store's script;
- then the message; a broker that refuses it fails the job at once (it never runs);
- with ``REDIS_MIN_REPLICAS``, the record is confirmed on the replicas before the
  message is sent, or withdrawn (``NotReplicated``: the API's 503, nothing left to
  run, so a retry creates it anew); the message too before the job is acknowledged,
  and a retry that finds the job confirms it again (a 202 always means "kept twice").

Errors are this module's exceptions; the API turns them into HTTP answers.
"""

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, ValidationError

from shared.config import Settings
from shared.feedback import finetune
from shared.jobs.queue import QueueUnavailable, TrainingQueue
from shared.jobs.records import ParentGone
from shared.jobs.store import JobStore
from shared.ml import job_memory
from shared.redisdb.client import NotReplicated
from shared.registry.service import Models
from shared.schemas.jobs import Job, JobEnd, JobOptions, JobRequest, JobStatus
from shared.schemas.models import ALIAS_PATTERN, ModelInfo, PromoteOption
from shared.schemas.params import EarlyStopping, Preset, TrainParams, with_preset

ValidationErrors = list[dict[str, Any]]


class Invalid(ValueError):
    """The request cannot run as given; ``errors`` name each field (a 422's detail)."""

    def __init__(self, errors: ValidationErrors) -> None:
        super().__init__("; ".join(str(e.get("msg")) for e in errors))
        self.errors = errors


class TooBig(Invalid):
    """The job's estimated memory is above ``JOB_MEMORY_LIMIT_MB``."""


class KeyReused(Exception):
    """The Idempotency-Key was used before with a different request."""


@dataclass(frozen=True)
class Accepted:
    job_id: UUID
    status: JobStatus
    created: bool


def _invalid(field: str, message: str) -> Invalid:
    return Invalid([{"loc": ("body", field), "msg": message, "type": "value_error"}])


class Fingerprint(BaseModel):
    """What makes two requests the same request, for the Idempotency-Key."""

    params: TrainParams
    promote: PromoteOption | None
    early_stopping: EarlyStopping | None
    init_model_id: UUID | None
    feedback_weight: int
    feedback_holdout: float


def fingerprint(job: Job) -> str:
    record = Fingerprint.model_validate(job.model_dump(include=set(Fingerprint.model_fields)))
    return hashlib.sha256(record.model_dump_json().encode()).hexdigest()


class Submitter:
    def __init__(
        self, jobs: JobStore, models: Models, queue: TrainingQueue, settings: Settings
    ) -> None:
        self.jobs, self.models, self.queue, self.settings = jobs, models, queue, settings

    def check_memory(self, params: TrainParams) -> None:
        """:class:`TooBig` naming the fields that size a job, if it would not fit."""
        if errors := job_memory.too_big(params, self.settings.job_memory_limit_mb):
            raise TooBig(errors)

    def build(self, request: JobRequest | None, preset: Preset | None) -> Job:
        """The job a request asks for, every value resolved and checked."""
        given, options = request.split() if request is not None else ({}, None)
        given, tuning = self._tuning(given, options)
        try:
            params = with_preset(preset, TrainParams.model_validate(given))
        except ValidationError as exc:  # the preset and the body together can clash
            raise Invalid([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        self.check_memory(params)
        return Job(
            id=uuid4(),
            params=params,
            epochs=params.epochs,
            promote=options.promote if options else None,
            early_stopping=options.early_stopping if options else None,
            **tuning,
        )

    def submit(
        self,
        request: JobRequest | None,
        preset: Preset | None = None,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Check, record and queue a job (see the module for the checks and errors;
        ``QueueFull``, ``ParentGone`` and ``QueueUnavailable`` come from below)."""
        job = self.build(request, preset)
        idempotency = (idempotency_key, fingerprint(job)) if idempotency_key else None
        try:
            created = self.jobs.create(job, self.settings.max_queued_jobs, idempotency)
        except ParentGone as exc:
            raise _invalid("init_model", str(exc)) from None
        if not created.created:
            if idempotency is not None and created.fingerprint != idempotency[1]:
                raise KeyReused("Idempotency-Key already used with a different body")
            self.jobs.confirm(created.job_id)  # its first answer may have been a 503
            original = self.jobs.get(created.job_id)
            status = original.status if original else JobStatus.queued
            return Accepted(created.job_id, status, created=False)
        try:
            self.jobs.confirm(job.id)
        except NotReplicated:
            self.jobs.withdraw(job.id, idempotency)  # not sent yet: nothing can run it
            raise
        self.enqueue(job.id)
        self.jobs.confirm(job.id)  # the message, sent after the record
        return Accepted(job.id, job.status, created=True)

    def enqueue(self, job_id: UUID) -> None:
        """Send the job's message; if the broker refuses, the job fails (it never runs)."""
        try:
            self.queue.send(job_id)
        except QueueUnavailable:
            self.jobs.finish(
                job_id, JobStatus.failed, JobEnd(error="could not queue: broker unreachable")
            )
            raise

    def parent(self, ref: str) -> ModelInfo:
        """The model ``ref`` names, as a model id or an alias; :class:`Invalid` if none."""
        try:
            model_id: UUID | None = UUID(ref)
        except ValueError:
            model_id = None
        if model_id is None:
            if not re.fullmatch(ALIAS_PATTERN, ref):
                raise _invalid("init_model", f"{ref!r} is neither a model id nor an alias name")
            alias = self.models.aliases.get_alias(ref)
            if alias is None:
                raise _invalid("init_model", f"no alias named {ref}")
            model_id = alias.model_id
        info = self.models.registry.get_model(model_id)
        if info is None or info.deleting:
            raise _invalid("init_model", f"no model {model_id} (via {ref})")
        return info

    def _tuning(
        self, given: dict[str, object], options: JobOptions | None
    ) -> tuple[dict[str, object], dict[str, Any]]:
        """The explicit parameters with the parent's architecture filled in, and the job
        record's fine-tuning fields."""
        if options is None:
            return given, {}
        fields: dict[str, Any] = {
            "feedback_weight": options.feedback_weight,
            "feedback_holdout": options.feedback_holdout,
        }
        if options.init_model is None:
            return given, fields
        parent = self.parent(options.init_model)
        try:
            given = finetune.inherit(given, parent.params)
        except finetune.ParentConflict as exc:
            raise _invalid(exc.name, str(exc)) from None
        return given, {**fields, "init_model": options.init_model, "init_model_id": parent.id}
