"""Hyper-parameter sweeps: the sweep record in Redis and the Optuna glue.

A sweep is a record (``sweep:<id>``, shared/sweep_schemas.py ``Sweep``) plus an
Optuna study whose journal lives in Redis (``JournalRedisBackend`` under
``sweep:<id>:optuna``), so that the sampler's state is in Redis and no process
holds the sweep. Each trial is an ordinary training job (``Job.sweep_id``,
``Job.trial``) with a deterministic id, ``uuid5(sweep id, number)``.

Everything that moves a sweep on is :meth:`Sweeper.advance`, idempotent and safe
to run from several processes at once: the worker that finished a trial runs it,
so does the API after creating or cancelling a sweep, and every worker's recovery
pass runs it for every unsettled sweep (which covers a process that died anywhere
in between). It

1. *reconciles*: each trial whose job has ended is told to Optuna
   (``skip_if_finished``) and then marked in the record (complete, pruned, failed,
   cancelled);
2. *tops up*: "may I start another trial, and which number" is one ``WATCH``
   transaction on the record (:meth:`SweepStore.reserve`: fewer than ``parallel``
   active, fewer than ``trials`` handed out, not cancelled), which hands out the
   next number and notes it as pending; then, under a short per-sweep lock, Optuna
   is asked for that number's values (a trial already asked for that number, or
   left half-asked by a crash, is reused, so a retry never asks twice); then one
   transaction records the trial and creates its job together
   (:meth:`SweepStore.record_trial`); only then is the job's message sent. A
   number left pending by a process that died is finished by the next advance;
   a job whose message may not have been sent is sent again (a duplicate message
   is harmless: the job lease lets one process train it);
3. *finishes* the sweep when every number was handed out and every trial ended
   (or it was cancelled and nothing is active), then runs the promotion gate for
   the best trial's model.

Trials are pruned by the worker (:class:`TrialMonitor`): after every epoch it
reports validation accuracy to the trial and stops at that epoch boundary when
the pruner says so. A pruned trial's job ends ``cancelled`` with
``pruned_at_epoch`` set and no model.
"""

import logging
import math
import random
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast, get_args
from uuid import UUID, uuid4, uuid5

import optuna
import redis
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalRedisBackend
from optuna.trial import TrialState as OptunaState
from pydantic import ValidationError

from shared.jobstore import JobStore
from shared.keys import Keys
from shared.redis_conn import call_with_retry
from shared.registry import ModelRegistry
from shared.schemas import Job, JobStatus, Preset, TrainParams, utcnow, with_preset
from shared.sweep_schemas import (
    DEFAULT_VALIDATION_FRACTION,
    BestTrial,
    ChoiceSpace,
    PrunerKind,
    RangeSpace,
    Sampler,
    SpaceParam,
    Sweep,
    SweepPublic,
    SweepRequest,
    SweepStatus,
    TrialRecord,
    TrialState,
)

log = logging.getLogger(__name__)

NUMBER_ATTR = "mnist_trial"
"""User attribute of an Optuna trial: the sweep's trial number it was asked for."""
ASK_LOCK_SECONDS = 30.0
"""Longest a process may hold a sweep's ask lock (a dead holder's expires)."""
PENDING_GRACE = timedelta(seconds=30)
"""A number pending this long was handed to a process that died: finish its trial."""
SEND_GRACE = timedelta(seconds=10)
"""A queued trial whose message is not marked sent this long after its creation
gets it sent again."""
STORAGE_CACHE = 16
"""Optuna storages a process keeps (each replays its journal once, then follows it)."""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

optuna.logging.set_verbosity(optuna.logging.WARNING)


class SweepNotFound(LookupError):
    pass


class SweepEnded(Exception):
    def __init__(self, sweep: Sweep) -> None:
        super().__init__(f"sweep {sweep.id} already {sweep.status.value}")
        self.sweep = sweep


class SweepInvalid(ValueError):
    """The request cannot be run; ``errors`` are 422 entries naming the fields."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e['loc']}: {e['msg']}" for e in errors))
        self.errors = errors


def trial_job_id(sweep_id: UUID, number: int) -> UUID:
    """The job of trial ``number``: derived, so that a retried step finds the same job."""
    return uuid5(sweep_id, f"trial-{number}")


# ------------------------------------------------------------------ the request


def _error(loc: tuple[str | int, ...], msg: str, value: object = None) -> dict[str, Any]:
    return {"loc": ("body", *loc), "msg": msg, "type": "value_error", "input": value}


def _numeric_kind(name: str) -> type | None:
    """``int`` or ``float`` for a numeric TrainParams field, else ``None``."""
    annotation = TrainParams.model_fields[name].annotation
    kinds = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    if bool in kinds:
        return None
    if int in kinds:
        return int
    if float in kinds:
        return float
    return None


def _space_values(spec: SpaceParam) -> list[Any]:
    return [spec.low, spec.high] if isinstance(spec, RangeSpace) else list(spec.choices)


def _check_space(
    name: str, spec: SpaceParam, base: TrainParams, sampler: Sampler
) -> list[dict[str, Any]]:
    """What is wrong with searching ``name`` as ``spec`` (nothing: ``[]``)."""
    loc: tuple[str, ...] = ("space", name)
    kind = _numeric_kind(name)
    if isinstance(spec, RangeSpace):
        if sampler is Sampler.grid:
            return [_error(loc, f"{name}: the grid sampler takes choices only")]
        if kind is None:
            return [_error(loc, f"{name} is not numeric: give it as {{'choices': [...]}}")]
        if spec.low > spec.high:
            return [_error(loc, f"{name}: low ({spec.low}) > high ({spec.high})")]
        if kind is int and not all(float(v).is_integer() for v in (spec.low, spec.high)):
            return [_error(loc, f"{name} is an integer field: low and high must be integers")]
        if spec.log and spec.low <= 0:
            return [_error(loc, f"{name}: a log scale needs low > 0")]
    errors = []
    if name == "validation_fraction" and min(_space_values(spec)) <= 0:
        errors.append(_error(loc, "validation_fraction must be > 0 in a sweep"))
    for value in _space_values(spec):
        try:
            TrainParams.model_validate({**base.model_dump(), name: value})
        except ValidationError as exc:
            first = exc.errors()[0]
            errors.append(_error(loc, f"{name}={value!r} is out of bounds: {first['msg']}", value))
            break
    return errors


def resolve(request: SweepRequest, preset: Preset | None = None) -> TrainParams:
    """The hyper-parameters every trial starts from, after checking the request.

    Raises :class:`SweepInvalid` naming each field that is wrong: unknown in the
    space, also set in ``base``, out of the field's own bounds, ``low > high``, a
    range on a grid, ``validation_fraction`` not > 0, more trials than the grid.
    """
    given = request.base.model_dump(exclude_unset=True) if request.base else {}
    given.pop("early_stopping", None)
    errors = []
    for name in request.space:
        if name not in TrainParams.model_fields:
            errors.append(_error(("space", name), f"{name} is not a training parameter"))
        elif name in given:
            errors.append(_error(("space", name), f"{name} is set in base too: keep one"))
    fraction = given.get("validation_fraction")
    if fraction is not None and fraction <= 0:
        errors.append(
            _error(
                ("base", "validation_fraction"),
                "validation_fraction must be > 0 in a sweep: trials are chosen by "
                "validation accuracy, never by the test set",
                fraction,
            )
        )
    if "validation_fraction" not in given and "validation_fraction" not in request.space:
        given["validation_fraction"] = DEFAULT_VALIDATION_FRACTION
    if errors:
        raise SweepInvalid(errors)
    try:
        base = with_preset(preset, TrainParams.model_validate(given))
    except ValidationError as exc:
        raise SweepInvalid(
            [_error(("base", *e["loc"]), e["msg"], e.get("input")) for e in exc.errors()]
        ) from None
    for name, spec in request.space.items():
        errors += _check_space(name, spec, base, request.sampler)
    if request.sampler is Sampler.grid and not errors:
        size = math.prod(len(cast(ChoiceSpace, s).choices) for s in request.space.values())
        if request.trials > size:
            errors.append(
                _error(("trials",), f"trials ({request.trials}) > the grid's size ({size})")
            )
    if errors:
        raise SweepInvalid(errors)
    return base


# ------------------------------------------------------------------ the record


class SweepStore:
    """Sweep records in Redis; every change is a ``WATCH`` transaction on the record."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def create(self, sweep: Sweep) -> None:
        with self.redis.pipeline() as pipe:
            pipe.set(self.keys.sweep(sweep.id), sweep.model_dump_json())
            pipe.zadd(self.keys.sweeps(), {str(sweep.id): sweep.created_at.timestamp()})
            pipe.sadd(self.keys.sweeps_active(), str(sweep.id))
            pipe.execute()

    def get(self, sweep_id: UUID) -> Sweep | None:
        raw = self.redis.get(self.keys.sweep(sweep_id))
        return Sweep.model_validate_json(raw) if raw else None

    def list_sweeps(self, offset: int, limit: int) -> tuple[list[Sweep], int]:
        """Sweeps, newest first."""
        ids = cast(list[str], self.redis.zrevrange(self.keys.sweeps(), offset, offset + limit - 1))
        total = self.redis.zcard(self.keys.sweeps())
        raws = self.redis.mget([self.keys.sweep(i) for i in ids]) if ids else []
        return [Sweep.model_validate_json(raw) for raw in raws if raw], int(total)

    def all_sweeps(self) -> list[Sweep]:
        ids = cast(list[str], self.redis.zrange(self.keys.sweeps(), 0, -1))
        raws = self.redis.mget([self.keys.sweep(i) for i in ids]) if ids else []
        return [Sweep.model_validate_json(raw) for raw in raws if raw]

    def active_ids(self) -> list[UUID]:
        return sorted(
            UUID(i) for i in cast(set[str], self.redis.smembers(self.keys.sweeps_active()))
        )

    def update(
        self,
        sweep_id: UUID,
        change: Callable[[Sweep], Sweep | None],
        also: Callable[[redis.client.Pipeline, Sweep], object] | None = None,
    ) -> Sweep:
        """Apply ``change`` atomically; ``None`` leaves the record as it is. ``also``
        queues more commands into the same MULTI when it changes. The set of unsettled
        sweeps follows ``settled`` here."""
        key = self.keys.sweep(sweep_id)

        def transaction(pipe: redis.client.Pipeline) -> Sweep:
            raw = pipe.get(key)
            if not raw:
                raise SweepNotFound(str(sweep_id))
            sweep = Sweep.model_validate_json(raw)
            changed = change(sweep.model_copy(deep=True))
            pipe.multi()
            if changed is None:
                return sweep
            pipe.set(key, changed.model_dump_json())
            if changed.settled:
                pipe.srem(self.keys.sweeps_active(), str(sweep_id))
            else:
                pipe.sadd(self.keys.sweeps_active(), str(sweep_id))
            if also is not None:
                also(pipe, changed)
            return changed

        def run() -> Sweep:
            result = self.redis.transaction(
                transaction,  # type: ignore[arg-type]  # redis-py types the callable as -> None
                key,
                value_from_callable=True,
            )
            return cast(Sweep, result)

        return call_with_retry(self.redis, run)

    def reserve(self, sweep_id: UUID) -> int | None:
        """May another trial start, and with which number: one atomic step.

        Hands out the next number (and notes it pending) only while the sweep is not
        cancelled or finished, fewer than ``trials`` numbers were handed out and fewer
        than ``parallel`` trials are active; else ``None``.
        """
        number: int | None = None

        def change(sweep: Sweep) -> Sweep | None:
            nonlocal number  # the transaction may re-run: the last run decides
            number = None
            if sweep.status.finished or sweep.cancel_requested:
                return None
            if sweep.asked >= sweep.request.trials or sweep.active() >= sweep.request.parallel:
                return None
            number = sweep.asked
            sweep.asked += 1
            sweep.pending[number] = utcnow()
            return sweep

        self.update(sweep_id, change)
        return number

    def record_trial(
        self, sweep_id: UUID, trial: TrialRecord, job: Job | None
    ) -> tuple[TrialRecord, bool]:
        """Record trial ``trial.number`` and create its job, in one transaction.

        Returns the recorded trial and whether this call created it (a retry, or a
        second process finishing the same number, gets the first one's record). A
        sweep cancelled meanwhile records the trial ``cancelled`` without a job.
        """
        created = False

        def change(sweep: Sweep) -> Sweep | None:
            nonlocal created
            created = False
            if sweep.trial(trial.number) is not None:
                return None
            record = trial
            if sweep.cancel_requested and not trial.state.finished:
                record = trial.model_copy(update={"state": TrialState.cancelled, "job_id": None})
            sweep.pending.pop(trial.number, None)
            sweep.trials = sorted([*sweep.trials, record], key=lambda t: t.number)
            created = True
            return sweep

        def create_job(pipe: redis.client.Pipeline, sweep: Sweep) -> None:
            recorded = sweep.trial(trial.number)
            if job is None or recorded is None or recorded.job_id != job.id:
                return
            member = str(job.id)  # as JobStore.create writes a job, without the queue limit
            pipe.set(self.keys.job(job.id), job.model_dump_json())
            pipe.zadd(self.keys.jobs(), {member: job.created_at.timestamp()})
            pipe.sadd(self.keys.jobs_active(), member)
            pipe.sadd(self.keys.jobs_queued(), member)

        sweep = self.update(sweep_id, change, also=create_job)
        recorded = sweep.trial(trial.number)
        assert recorded is not None
        return recorded, created

    def mark_sent(self, sweep_id: UUID, number: int) -> None:
        def change(sweep: Sweep) -> Sweep | None:
            trial = sweep.trial(number)
            if trial is None or trial.sent:
                return None
            trial.sent = True
            return sweep

        self.update(sweep_id, change)

    def end_trial(self, sweep_id: UUID, number: int, outcome: TrialRecord) -> None:
        """Write a trial's final state (once: a second writer finds it ended)."""

        def change(sweep: Sweep) -> Sweep | None:
            trial = sweep.trial(number)
            if trial is None or trial.state.finished:
                return None
            sweep.trials[sweep.trials.index(trial)] = outcome
            return sweep

        self.update(sweep_id, change)

    def mark_started(self, sweep_id: UUID) -> None:
        """A first trial is running: the sweep is ``running`` from now."""

        def change(sweep: Sweep) -> Sweep | None:
            if sweep.status is not SweepStatus.queued:
                return None
            sweep.status, sweep.started_at = SweepStatus.running, utcnow()
            return sweep

        self.update(sweep_id, change)


# ------------------------------------------------------------------ Optuna


def _sampler(sweep: Sweep, number: int) -> optuna.samplers.BaseSampler:
    """The sampler for asking trial ``number``: seeded from the sweep's seed and the
    number, so no two processes draw the same values for different trials."""
    request = sweep.request
    if request.sampler is Sampler.grid:
        grid = {name: list(cast(ChoiceSpace, s).choices) for name, s in request.space.items()}
        return optuna.samplers.GridSampler(grid, seed=sweep.seed)
    seed = (sweep.seed + number) % 2**32
    if request.sampler is Sampler.random:
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
    request = sweep.request
    if request.pruner is PrunerKind.none:
        return optuna.pruners.NopPruner()
    # steps are 1-based epochs: a step below n_warmup_steps is never pruned
    return optuna.pruners.MedianPruner(
        n_startup_trials=request.pruner_startup_trials,
        n_warmup_steps=request.pruner_warmup_epochs + 1,
    )


def _suggest(trial: optuna.trial.Trial, name: str, spec: SpaceParam) -> Any:
    if isinstance(spec, ChoiceSpace):
        return trial.suggest_categorical(name, spec.choices)
    if _numeric_kind(name) is int:
        return trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log)
    return trial.suggest_float(name, float(spec.low), float(spec.high), log=spec.log)


def trial_outcome(
    trial: TrialRecord, job: Job | None, val_accuracy: Callable[[int], float | None]
) -> TrialRecord:
    """The trial's final record from its ended job; ``val_accuracy(epoch)`` reads the
    job's history. The value is the validation accuracy of the epoch whose weights
    the model kept (the best epoch under early stopping, else the last)."""
    if job is None:
        return trial.model_copy(update={"state": TrialState.failed, "error": "job record lost"})
    update: dict[str, Any] = {"epochs_run": job.epoch}
    if job.status is JobStatus.succeeded:
        value = val_accuracy(job.best_epoch or job.epoch)
        if value is None or math.isnan(value):
            update |= {"state": TrialState.failed, "error": "no validation accuracy"}
        else:
            update |= {"state": TrialState.complete, "value": value, "model_id": job.model_id}
    elif job.status is JobStatus.cancelled and job.pruned_at_epoch is not None:
        update |= {
            "state": TrialState.pruned,
            "value": val_accuracy(job.pruned_at_epoch),
            "epochs_run": job.pruned_at_epoch,
        }
    elif job.status is JobStatus.cancelled:
        update |= {"state": TrialState.cancelled}
    else:
        update |= {"state": TrialState.failed, "error": job.error}
    return trial.model_copy(update=update)


@dataclass
class Sweeper:
    """Creates, advances, cancels and shows sweeps; see the module docstring."""

    redis: redis.Redis
    keys: Keys
    redis_url: str
    send: Callable[[UUID], object]
    """Puts a job's message on the training queue."""
    _storages: dict[UUID, JournalStorage] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = SweepStore(self.redis, self.keys)
        self.jobs = JobStore(self.redis, self.keys)
        self.registry = ModelRegistry(self.redis, self.keys)

    # Optuna

    def _storage(self, sweep_id: UUID) -> JournalStorage:
        storage = self._storages.get(sweep_id)
        if storage is None:
            if len(self._storages) >= STORAGE_CACHE:
                self._storages.pop(next(iter(self._storages)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                backend = JournalRedisBackend(
                    self.redis_url, prefix=self.keys.sweep_optuna(sweep_id)
                )
            storage = self._storages[sweep_id] = JournalStorage(backend)
        return storage

    def study(self, sweep: Sweep, number: int | None = None) -> optuna.Study:
        """The sweep's study; with the sampler for asking trial ``number``, else a plain
        one (a grid sampler told of the last point would try to stop the study)."""
        sampler = _sampler(sweep, number) if number is not None else optuna.samplers.RandomSampler()
        return optuna.load_study(
            study_name=str(sweep.id),
            storage=self._storage(sweep.id),
            sampler=sampler,
            pruner=_pruner(sweep),
        )

    @contextmanager
    def _asking(self, sweep_id: UUID) -> Iterator[None]:
        """One process at a time asks Optuna for a sweep's trials, so that a sampler
        sees every earlier trial (a grid point is never handed out twice)."""
        key, token = self.keys.sweep_asking(sweep_id), uuid4().hex
        deadline = time.monotonic() + 2 * ASK_LOCK_SECONDS
        while not self.redis.set(key, token, nx=True, px=int(ASK_LOCK_SECONDS * 1000)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id}: another process keeps asking")
            time.sleep(0.05)
        try:
            yield
        finally:
            self.redis.eval(_RELEASE, 1, key, token)

    def _ask(self, sweep: Sweep, number: int) -> tuple[int, dict[str, Any]]:
        """Optuna's trial for ``number`` and its values: the one already asked for this
        number if any, else one a crashed asker left unlabelled, else a new one."""
        with self._asking(sweep.id):
            study = self.study(sweep, number)
            trials = study.get_trials(deepcopy=False)
            found = next((t for t in trials if t.user_attrs.get(NUMBER_ATTR) == number), None)
            if found is not None and found.state.is_finished():
                return found._trial_id, dict(found.params)
            if found is None:
                found = next(
                    (
                        t
                        for t in trials
                        if t.state is OptunaState.RUNNING and NUMBER_ATTR not in t.user_attrs
                    ),
                    None,
                )
            trial = optuna.trial.Trial(study, found._trial_id) if found else study.ask()
            params = {
                name: _suggest(trial, name, spec) for name, spec in sweep.request.space.items()
            }
            trial.set_user_attr(NUMBER_ATTR, number)
            return trial._trial_id, params

    def _tell(self, sweep: Sweep, outcome: TrialRecord) -> None:
        if outcome.optuna_trial_id is None:
            return
        study = self.study(sweep)
        trial = optuna.trial.Trial(study, outcome.optuna_trial_id)
        try:
            if outcome.state is TrialState.complete:
                study.tell(trial, outcome.value, skip_if_finished=True)
            elif outcome.state is TrialState.pruned:
                study.tell(trial, state=OptunaState.PRUNED, skip_if_finished=True)
            else:
                study.tell(trial, state=OptunaState.FAIL, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another process told it between our check and our write: same outcome

    # the life of a sweep

    def create(self, request: SweepRequest, preset: Preset | None = None) -> Sweep:
        """Check, record and start a sweep (its first ``parallel`` trials are queued)."""
        base = resolve(request, preset)
        seed = request.seed if request.seed is not None else random.randrange(2**32)
        sweep = Sweep(id=uuid4(), request=request, base=base, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.create_study(
                storage=self._storage(sweep.id),
                study_name=str(sweep.id),
                direction="maximize",
                load_if_exists=True,
            )
        self.store.create(sweep)
        try:
            return self.advance(sweep.id) or sweep
        except Exception:  # recorded: the workers' recovery passes start its trials
            log.exception("sweep %s: could not start its first trials", sweep.id)
            return sweep

    def advance(self, sweep_id: UUID) -> Sweep | None:
        """Reconcile ended trials, start trials while there is room, finish the sweep."""
        sweep = self.store.get(sweep_id)
        if sweep is None or sweep.settled:
            return sweep
        self._reconcile(sweep)
        sweep = self._resume_unfinished_steps(sweep_id)
        while (number := self.store.reserve(sweep_id)) is not None:
            self._start_trial(self._get(sweep_id), number)
        return self._finish(sweep_id)

    def _get(self, sweep_id: UUID) -> Sweep:
        sweep = self.store.get(sweep_id)
        if sweep is None:
            raise SweepNotFound(str(sweep_id))
        return sweep

    def _reconcile(self, sweep: Sweep) -> None:
        """Tell Optuna about trials whose job ended, then record how they ended."""
        open_trials = [t for t in sweep.trials if not t.state.finished and t.job_id]
        if not open_trials:
            return
        raws = self.redis.mget([self.keys.job(t.job_id) for t in open_trials])
        for trial, raw in zip(open_trials, raws, strict=True):
            job = Job.model_validate_json(raw) if raw else None
            if job is not None and not job.status.finished:
                continue
            history = self.jobs.progress(job.id, 0)[1] if job is not None else []

            def val_accuracy(epoch: int, rows: list[Any] = history) -> float | None:
                return rows[epoch - 1].val_accuracy if 0 < epoch <= len(rows) else None

            outcome = trial_outcome(trial, job, val_accuracy)
            self._tell(sweep, outcome)  # before the record: a retry tells again, harmlessly
            self.store.end_trial(sweep.id, trial.number, outcome)
            log.info(
                "sweep %s: trial %d %s (value %s)",
                sweep.id,
                trial.number,
                outcome.state.value,
                outcome.value,
            )

    def _resume_unfinished_steps(self, sweep_id: UUID) -> Sweep:
        """Finish what a process that died left half done: numbers handed out without
        a trial, trials whose message may never have been sent."""
        sweep = self._get(sweep_id)
        now = utcnow()
        for number, since in sorted(sweep.pending.items()):
            if now - since > PENDING_GRACE:
                log.warning("sweep %s: finishing trial %d left pending", sweep_id, number)
                self._start_trial(sweep, number)
        for trial in sweep.trials:
            if trial.sent or trial.job_id is None or now - trial.created_at < SEND_GRACE:
                continue
            job = self.jobs.get(trial.job_id)
            if job is not None and job.status is JobStatus.queued:
                log.warning("sweep %s: sending trial %d's job again", sweep_id, trial.number)
                self.send(trial.job_id)
            self.store.mark_sent(sweep_id, trial.number)
        return self._get(sweep_id)

    def _start_trial(self, sweep: Sweep, number: int) -> None:
        """Ask Optuna for trial ``number``'s values, record it with its job, queue it."""
        if sweep.cancel_requested:
            record = TrialRecord(number=number, params={}, state=TrialState.cancelled)
            self.store.record_trial(sweep.id, record, None)
            return
        optuna_id, values = self._ask(sweep, number)
        record = TrialRecord(
            number=number,
            params=values,
            state=TrialState.queued,
            optuna_trial_id=optuna_id,
        )
        try:
            params = TrainParams.model_validate({**sweep.base.model_dump(), **values})
        except ValidationError as exc:  # a combination the bounds of one field cannot see
            error = f"invalid combination: {exc.errors()[0]['msg']}"
            failed = record.model_copy(update={"state": TrialState.failed, "error": error})
            self._tell(sweep, failed)
            self.store.record_trial(sweep.id, failed, None)
            return
        job = Job(
            id=trial_job_id(sweep.id, number),
            params=params,
            epochs=params.epochs,
            early_stopping=sweep.request.base.early_stopping if sweep.request.base else None,
            sweep_id=sweep.id,
            trial=number,
        )
        recorded, created = self.store.record_trial(
            sweep.id, record.model_copy(update={"job_id": job.id}), job
        )
        if recorded.state is TrialState.cancelled:
            self._tell(sweep, recorded)
        elif created:
            self.send(job.id)
            self.store.mark_sent(sweep.id, number)
            log.info("sweep %s: trial %d queued as job %s: %s", sweep.id, number, job.id, values)

    def _finish(self, sweep_id: UUID) -> Sweep:
        """The final status once nothing is active and nothing more will start; then
        the promotion gate for the best model (once: ``settled`` records it ran)."""

        def change(sweep: Sweep) -> Sweep | None:
            if sweep.status.finished or sweep.active():
                return None
            if not sweep.cancel_requested and sweep.asked < sweep.request.trials:
                return None
            complete = [t for t in sweep.trials if t.state is TrialState.complete]
            if complete:
                top = max(complete, key=lambda t: (cast(float, t.value), -t.number))
                sweep.best = BestTrial(
                    number=top.number,
                    value=cast(float, top.value),
                    params=top.params,
                    model_id=top.model_id,
                )
            if sweep.cancel_requested:
                sweep.status = SweepStatus.cancelled
            elif complete:
                sweep.status = SweepStatus.succeeded
            else:
                sweep.status = SweepStatus.failed
                counts = Counter(t.state.value for t in sweep.trials)
                sweep.error = "no trial completed: " + ", ".join(
                    f"{n} {state}" for state, n in sorted(counts.items())
                )
            sweep.finished_at = utcnow()
            sweep.started_at = sweep.started_at or sweep.finished_at
            sweep.settled = sweep.status is not SweepStatus.succeeded or not sweep.request.promote
            return sweep

        sweep = self.store.update(sweep_id, change)
        if sweep.status.finished and not sweep.settled:
            sweep = self._promote(sweep)
        return sweep

    def _promote(self, sweep: Sweep) -> Sweep:
        option = sweep.request.promote
        model_id = sweep.best.model_id if sweep.best else None
        info = self.registry.get_model(model_id) if model_id else None
        promotion = None
        if option is not None and info is not None:
            promotion = self.registry.promote_if_better(info, option, info.test_accuracy)
            log.info(
                "sweep %s: promotion gate for %s: %s", sweep.id, option.alias, promotion.reason
            )

        def change(record: Sweep) -> Sweep | None:
            if record.settled:
                return None
            record.promotion, record.settled = promotion, True
            return record

        return self.store.update(sweep.id, change)

    def cancel(self, sweep_id: UUID) -> Sweep:
        """No new trial starts; queued and running trials end ``cancelled`` at their
        next epoch boundary (through their jobs' cancel). Raises :class:`SweepEnded`."""

        def change(sweep: Sweep) -> Sweep:
            if sweep.status.finished:
                raise SweepEnded(sweep)
            sweep.cancel_requested = True
            return sweep

        sweep = self.store.update(sweep_id, change)
        for trial in sweep.trials:
            if trial.job_id is not None and not trial.state.finished:
                try:
                    self.jobs.request_cancel(trial.job_id)
                except Exception as exc:  # ended, or saving its model: it ends by itself
                    log.info("sweep %s: trial %d not cancelled: %s", sweep_id, trial.number, exc)
        return self.advance(sweep_id) or sweep

    def mark_started(self, sweep_id: UUID) -> None:
        self.store.mark_started(sweep_id)

    # what clients see

    def view(self, sweep: Sweep) -> SweepPublic:
        return live_view(self.redis, self.keys, sweep)


def live_view(client: redis.Redis, keys: Keys, sweep: Sweep) -> SweepPublic:
    """The record with each open trial's state and epochs read from its job (the record
    itself is written only when a trial is created and when it ends)."""
    open_trials = [t for t in sweep.trials if not t.state.finished and t.job_id]
    raws = client.mget([keys.job(t.job_id) for t in open_trials]) if open_trials else []
    live = {}
    for trial, raw in zip(open_trials, raws, strict=True):
        if not raw:
            continue
        job = Job.model_validate_json(raw)
        state = TrialState.queued if job.status is JobStatus.queued else TrialState.running
        live[trial.number] = trial.model_copy(update={"state": state, "epochs_run": job.epoch})
    trials = [live.get(t.number, t) for t in sweep.trials]
    status = sweep.status
    if status is SweepStatus.queued and any(t.state is not TrialState.queued for t in trials):
        status = SweepStatus.running
    counts = Counter(t.state.value for t in trials)
    wall = None
    if sweep.started_at is not None:
        wall = ((sweep.finished_at or utcnow()) - sweep.started_at).total_seconds()
    return SweepPublic(
        **sweep.model_dump(exclude={"trials", "status"}),
        status=status,
        trials=trials,
        counts={state.value: counts.get(state.value, 0) for state in TrialState},
        wall_seconds=wall,
    )


class TrialMonitor:
    """In the worker, beside a trial's training: reports each epoch's validation
    accuracy to its Optuna trial and says when the pruner wants it stopped."""

    def __init__(self, sweeper: Sweeper, sweep: Sweep, trial: TrialRecord) -> None:
        self.sweep_id, self.number = sweep.id, trial.number
        self._trial: optuna.trial.Trial | None = None
        if sweep.request.pruner is not PrunerKind.none and trial.optuna_trial_id is not None:
            self._trial = optuna.trial.Trial(sweeper.study(sweep), trial.optuna_trial_id)

    def should_prune(self, epoch: int, val_accuracy: float | None) -> bool:
        if self._trial is None or val_accuracy is None:
            return False
        try:
            self._trial.report(val_accuracy, epoch)  # a resumed run's repeats are ignored
            return self._trial.should_prune()
        except Exception as exc:  # the pruner is advice: training goes on without it
            log.warning(
                "sweep %s: trial %d: pruner unavailable: %s", self.sweep_id, self.number, exc
            )
            return False
