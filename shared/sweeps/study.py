"""The Optuna side of a sweep: its study over a journal in Redis, asking and telling.

Each sweep's study lives in Redis (``JournalRedisBackend`` under ``sweep:<id>:optuna``),
so no process holds a sweep. The journal talks through the service's own client
(shared/redisdb/client.py: retries, Sentinel), not one Optuna would build from a URL.
A process keeps one :class:`Studies` for its life (the API's app, the worker's
process): a journal storage replays the sweep's log once and then reads only what was
appended since, so a trial step costs one short read, not a replay of the whole sweep.
"""

import logging
import warnings
from collections import OrderedDict
from typing import Any, cast
from uuid import UUID

import optuna
import redis
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalRedisBackend
from optuna.trial import TrialState as OptunaState

from shared.redisdb.keys import Keys
from shared.redisdb.lock import TokenKeys
from shared.schemas.sweeps import (
    ChoiceSpace,
    PrunerKind,
    Sampler,
    SpaceParam,
    Sweep,
    TrialRecord,
    TrialState,
)
from shared.sweeps.request import numeric_kind

log = logging.getLogger(__name__)

NUMBER_ATTR = "mnist_trial"
"""User attribute of an Optuna trial: the sweep's trial number it was asked for."""
ASK_LOCK_SECONDS = 30.0
"""Longest a process may hold a sweep's ask lock (a dead holder's expires)."""
STORAGE_CACHE = 16
"""Journal storages a process keeps (each replays its journal once, then follows it)."""

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Journal(JournalRedisBackend):
    """Optuna's Redis journal over a client of ours (bytes, not decoded: the journal
    keeps pickled snapshots). ``JournalRedisBackend`` would build its own client from a
    URL, which knows nothing of Sentinel or of our retries; its reads and writes are
    all through ``_redis``, so that is the one thing given here."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:  # no super(): no URL
        self._url = ""
        self._redis = client
        self._use_cluster = False
        self._prefix = prefix


def sampler_for(sweep: Sweep, number: int) -> optuna.samplers.BaseSampler:
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


def pruner_for(sweep: Sweep) -> optuna.pruners.BasePruner:
    request = sweep.request
    if request.pruner is PrunerKind.none:
        return optuna.pruners.NopPruner()
    # steps are 1-based epochs: a step below n_warmup_steps is never pruned
    return optuna.pruners.MedianPruner(
        n_startup_trials=request.pruner_startup_trials,
        n_warmup_steps=request.pruner_warmup_epochs + 1,
    )


def suggest(trial: optuna.trial.Trial, name: str, spec: SpaceParam) -> Any:
    if isinstance(spec, ChoiceSpace):
        return trial.suggest_categorical(name, spec.choices)
    if numeric_kind(name) is int:
        return trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log)
    return trial.suggest_float(name, float(spec.low), float(spec.high), log=spec.log)


class Studies:
    """The studies of every sweep, as one process sees them."""

    def __init__(self, client: redis.Redis, keys: Keys, journal: redis.Redis) -> None:
        """``journal``: a client that does not decode replies (the journal's own)."""
        self.keys, self.journal = keys, journal
        self._tokens = TokenKeys(client)
        self._storages: OrderedDict[UUID, JournalStorage] = OrderedDict()

    def storage(self, sweep_id: UUID) -> JournalStorage:
        storage = self._storages.get(sweep_id)
        if storage is not None:
            self._storages.move_to_end(sweep_id)
            return storage
        if len(self._storages) >= STORAGE_CACHE:
            self._storages.popitem(last=False)
        backend = Journal(self.journal, prefix=self.keys.sweep_optuna(sweep_id))
        storage = self._storages[sweep_id] = JournalStorage(backend)
        return storage

    def create(self, sweep: Sweep) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.create_study(
                storage=self.storage(sweep.id),
                study_name=str(sweep.id),
                direction="maximize",
                load_if_exists=True,
            )

    def study(self, sweep: Sweep, number: int | None = None) -> optuna.Study:
        """The sweep's study; with the sampler for asking trial ``number``, else a plain
        one (a grid sampler told of the last point would try to stop the study)."""
        sampler = (
            sampler_for(sweep, number) if number is not None else optuna.samplers.RandomSampler()
        )
        return optuna.load_study(
            study_name=str(sweep.id),
            storage=self.storage(sweep.id),
            sampler=sampler,
            pruner=pruner_for(sweep),
        )

    def ask(self, sweep: Sweep, number: int) -> tuple[int, dict[str, Any]]:
        """Optuna's trial for ``number`` and its values: the one already asked for this
        number if any, else one a crashed asker left unlabelled, else a new one.

        One process at a time asks for a sweep's trials, so that a sampler sees every
        earlier trial (a grid point is never handed out twice)."""
        key = self.keys.sweep_asking(sweep.id)
        with self._tokens.held(key, ASK_LOCK_SECONDS, wait=2 * ASK_LOCK_SECONDS):
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
                name: suggest(trial, name, spec) for name, spec in sweep.request.space.items()
            }
            trial.set_user_attr(NUMBER_ATTR, number)
            return trial._trial_id, params

    def tell(self, sweep: Sweep, outcome: TrialRecord) -> None:
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

    def monitor(self, sweep: Sweep, trial: TrialRecord) -> "TrialMonitor":
        return TrialMonitor(self, sweep, trial)


class TrialMonitor:
    """In the worker, beside a trial's training: reports each epoch's validation
    accuracy to its Optuna trial and says when the pruner wants it stopped."""

    def __init__(self, studies: Studies, sweep: Sweep, trial: TrialRecord) -> None:
        self.sweep_id, self.number = sweep.id, trial.number
        self._trial: optuna.trial.Trial | None = None
        if sweep.request.pruner is not PrunerKind.none and trial.optuna_trial_id is not None:
            self._trial = optuna.trial.Trial(studies.study(sweep), trial.optuna_trial_id)

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
