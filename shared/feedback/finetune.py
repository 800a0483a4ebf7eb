"""Fine-tuning on users' corrections: what a job with ``init_model`` or ``feedback_weight``
trains on and starts from, and how its model card measures the result.

- **Frozen corrections**: at a job's first start the ids of the corrections present in
  ``FEEDBACK_DIR`` are frozen (sorted) under ``job:<id>:feedback``, with their count and
  sha256 on the job record, in one transaction; every later attempt (a resume after a
  worker was killed) reads that list, so it trains on the same data. A correction a
  moderator deleted meanwhile is skipped: its file is gone.
- **Hold-out**: a seeded share (``feedback_holdout``, seed = the job's) is kept out of
  training; the model card reports the new model's and the parent's accuracy on it.
- **Training set**: MNIST as the job's parameters split it, plus each remaining
  correction repeated ``feedback_weight`` times (at most :data:`MAX_EXTRA_ROWS` rows in
  all: the repeats are lowered to fit).
- **Start**: the parent's weights, momentum zero, epoch 0, the job's own ``eta``.
"""

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast
from uuid import UUID

import numpy as np
import redis

from shared.feedback.files import FeedbackFiles, load_images
from shared.jobs.leases import Fence
from shared.jobs.store import JobStore
from shared.ml import mlp, training
from shared.redisdb.keys import Keys
from shared.registry.files import LoadedModel, ModelFileError, ModelFiles
from shared.schemas.common import utcnow
from shared.schemas.jobs import FrozenFeedback, Job
from shared.schemas.models import Lineage, ModelInfo, ModelMeta
from shared.schemas.params import TrainParams

log = logging.getLogger(__name__)

INHERITED = ("n_hidden", "input_scaling", "dtype")
"""Parameters a fine-tune takes from its parent: they make the weights' shape and meaning."""
MAX_EXTRA_ROWS = 60_000
"""Most rows the corrections add to a training set (one MNIST's worth), repeats included."""


class ParentConflict(ValueError):
    """A parameter given explicitly differs from the parent model's."""

    def __init__(self, name: str, given: object, parent: object) -> None:
        super().__init__(
            f"{name}={given} conflicts with the init model's {name}={parent}; leave it out "
            "to inherit it"
        )
        self.name = name


def inherit(given: dict[str, object], parent: TrainParams) -> dict[str, object]:
    """The request's explicit parameters with the parent's architecture filled in (over
    any preset); :class:`ParentConflict` for an explicit value that differs."""
    merged = dict(given)
    for name in INHERITED:
        inherited = getattr(parent, name)
        if name in given and given[name] != inherited:
            raise ParentConflict(name, _plain(given[name]), _plain(inherited))
        merged[name] = inherited
    return merged


def _plain(value: object) -> object:
    return getattr(value, "value", value)


def uses_feedback(job: Job) -> bool:
    """Jobs that freeze corrections: fine-tunes (to measure them) and those that train on them."""
    return job.init_model_id is not None or job.feedback_weight > 0


def ids_sha256(ids: list[UUID]) -> str:
    return hashlib.sha256("\n".join(str(i) for i in ids).encode()).hexdigest()


def freeze(
    jobs: JobStore, keys: Keys, job_id: UUID, files: FeedbackFiles, fence: Fence | None = None
) -> list[UUID]:
    """The job's correction ids: frozen now from the folder if this is its first start,
    else the list frozen then. One transaction writes the list and the job's summary."""
    frozen = _read_frozen(jobs.redis, keys, job_id)
    if frozen is not None:  # written in the same transaction as the job's summary
        return frozen
    ids = files.ids()
    summary = FrozenFeedback(count=len(ids), sha256=ids_sha256(ids), frozen_at=utcnow())

    def change(job: Job) -> Job | None:
        if job.feedback is not None:
            return None  # another attempt froze them first
        job.feedback = summary
        return job

    def write(pipe: redis.client.Pipeline) -> None:
        pipe.set(keys.job_feedback(job_id), json.dumps([str(i) for i in ids]))

    jobs.update(job_id, change, also=write, fence=fence)
    stored = _read_frozen(jobs.redis, keys, job_id)
    if stored is None:
        raise RuntimeError(f"job {job_id}: its frozen correction ids are missing")
    log.info("job %s: %d correction(s) frozen", job_id, len(stored))
    return stored


def _read_frozen(client: redis.Redis, keys: Keys, job_id: UUID) -> list[UUID] | None:
    raw = cast(str | None, client.get(keys.job_feedback(job_id)))
    if raw is None:
        return None
    return [UUID(i) for i in json.loads(raw)]


def read_frozen(client: redis.Redis, keys: Keys, job_id: UUID) -> list[UUID] | None:
    """The ids a job froze, or ``None`` if it froze none (yet)."""
    return _read_frozen(client, keys, job_id)


def holdout_split(ids: list[UUID], fraction: float, seed: int) -> tuple[list[UUID], list[UUID]]:
    """(train, holdout): a seeded share of the ids held out, the same on every resume."""
    n_out = int(len(ids) * fraction)
    order = np.random.default_rng([seed, 2]).permutation(len(ids))
    out = {int(i) for i in order[:n_out]}
    train = [i for k, i in enumerate(ids) if k not in out]
    held = [i for k, i in enumerate(ids) if k in out]
    return train, held


@dataclass
class CorrectionSet:
    """The corrections a job trains on and those it measures on."""

    train_x: np.ndarray = field(default_factory=lambda: np.zeros((0, 784), np.uint8))
    train_y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    holdout_x: np.ndarray = field(default_factory=lambda: np.zeros((0, 784), np.uint8))
    holdout_y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    repeats: int = 0

    @property
    def trained_on(self) -> int:
        return len(self.train_y) if self.repeats else 0


def load(job: Job, ids: list[UUID], files: FeedbackFiles) -> CorrectionSet:
    """Read the frozen corrections and split them (train / hold-out) for this job."""
    train_ids, held_ids = holdout_split(ids, job.feedback_holdout, job.params.seed)
    train_x, train_y, _ = load_images(files, train_ids)
    held_x, held_y, _ = load_images(files, held_ids)
    repeats = job.feedback_weight
    if repeats and len(train_y) * repeats > MAX_EXTRA_ROWS:
        repeats = max(1, MAX_EXTRA_ROWS // len(train_y))
        log.warning(
            "job %s: feedback_weight %d lowered to %d (%d corrections, at most %d rows)",
            job.id,
            job.feedback_weight,
            repeats,
            len(train_y),
            MAX_EXTRA_ROWS,
        )
    return CorrectionSet(train_x, train_y, held_x, held_y, repeats if len(train_y) else 0)


def with_corrections(data: training.Dataset, corrections: CorrectionSet) -> training.Dataset:
    """The training set plus the corrections, each ``repeats`` times (a copy only then)."""
    if not corrections.repeats:
        return data
    extra_x = np.repeat(corrections.train_x, corrections.repeats, axis=0)
    extra_y = np.repeat(corrections.train_y, corrections.repeats, axis=0)
    return training.Dataset(
        np.concatenate([data.train_x, extra_x]),
        np.concatenate([data.train_y, extra_y.astype(data.train_y.dtype)]),
        data.val_x,
        data.val_y,
        data.test_x,
        data.test_y,
    )


def initial_state(parent: LoadedModel, params: TrainParams) -> training.TrainState:
    """Start from the parent's weights (a copy in the job's dtype), momentum zero, epoch 0."""
    dtype = np.dtype(params.dtype)
    weights = mlp.Weights(*(np.array(a, dtype=dtype, order="C") for a in parent.weights.arrays()))
    return training.TrainState(
        weights,
        mlp.Weights.zeros_like(weights),
        params.eta,
        0,
        np.random.default_rng(params.seed),
    )


def holdout_accuracy(
    weights: mlp.Weights, corrections: CorrectionSet, scale: float
) -> float | None:
    """Accuracy on the held-out corrections, ``None`` when none were held out."""
    if not len(corrections.holdout_y):
        return None
    return training.accuracy(weights, corrections.holdout_x, corrections.holdout_y, scale)


@dataclass
class Setup:
    """A job's corrections and parent model, read once at its start."""

    corrections: CorrectionSet
    parent: LoadedModel | None

    def card(self, weights: mlp.Weights, scale: float) -> Lineage:
        """The model card's lineage and correction fields."""
        parent_accuracy = None
        if self.parent is not None:
            parent_accuracy = holdout_accuracy(
                self.parent.weights, self.corrections, self.parent.input_scale
            )
        return Lineage(
            parent_model_id=self.parent.id if self.parent is not None else None,
            feedback_count=self.corrections.trained_on,
            feedback_accuracy=holdout_accuracy(weights, self.corrections, scale),
            parent_feedback_accuracy=parent_accuracy,
        )

    def measure(self, models: ModelFiles, model_id: UUID) -> float | None:
        """Another model (the promotion gate's incumbent) on the same held-out corrections."""
        try:
            model = models.load(model_id)
        except ModelFileError as exc:
            log.warning("cannot measure model %s on the corrections: %s", model_id, exc)
            return None
        return holdout_accuracy(model.weights, self.corrections, model.input_scale)

    def gate_measure(self, models: ModelFiles) -> Callable[[ModelInfo], float | None]:
        """The promotion gate's ``incumbent_metric`` for ``feedback_accuracy``."""
        return lambda incumbent: self.measure(models, incumbent.id)


def prepare(
    job: Job, jobs: JobStore, models: ModelFiles, files: FeedbackFiles, fence: Fence | None = None
) -> Setup | None:
    """For a fine-tune or a job trained on corrections: freeze (or re-read) its
    corrections, load them and its parent. ``None`` for any other job."""
    if not uses_feedback(job):
        return None
    ids = freeze(jobs, jobs.keys, job.id, files, fence)
    corrections = load(job, ids, files)
    parent = None
    if job.init_model_id is not None:
        try:
            parent = models.load(job.init_model_id)
        except ModelFileError as exc:
            raise RuntimeError(f"the init model {job.init_model_id} is unusable: {exc}") from None
    return Setup(corrections, parent)


def candidate_value(metric: str, test_accuracy: float, card: ModelMeta) -> float | None:
    """The candidate's figure for the promotion gate's ``metric``."""
    return card.feedback_accuracy if metric == "feedback_accuracy" else test_accuracy
