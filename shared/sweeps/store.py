"""Sweep records in Redis; every change is a ``WATCH`` transaction on the record."""

from collections.abc import Callable
from typing import cast
from uuid import UUID

import redis

from shared.redisdb.client import transact
from shared.redisdb.store import Ended, RedisStore, decode_record
from shared.schemas.common import utcnow
from shared.schemas.sweeps import Sweep, SweepStatus, TrialRecord, TrialState


class SweepNotFound(LookupError):
    pass


class SweepEnded(Ended):
    """The sweep already succeeded, failed or was cancelled."""


def decode(raw: str | bytes | None) -> Sweep | None:
    """A stored record, or ``None`` (logged) if it does not validate."""
    return decode_record(Sweep, raw, "a sweep record")


class SweepStore(RedisStore):
    """Sweep records in Redis; every change is a ``WATCH`` transaction on the record."""

    def create(self, sweep: Sweep) -> None:
        with self.redis.pipeline() as pipe:
            pipe.set(self.keys.sweep(sweep.id), sweep.model_dump_json())
            pipe.zadd(self.keys.sweeps(), {str(sweep.id): sweep.created_at.timestamp()})
            pipe.sadd(self.keys.sweeps_active(), str(sweep.id))
            pipe.execute()

    def get(self, sweep_id: UUID) -> Sweep | None:
        return decode(cast(str | None, self.redis.get(self.keys.sweep(sweep_id))))

    def list_sweeps(self, offset: int, limit: int) -> tuple[list[Sweep], int]:
        """Sweeps, newest first."""
        ids = cast(list[str], self.redis.zrevrange(self.keys.sweeps(), offset, offset + limit - 1))
        total = self.redis.zcard(self.keys.sweeps())
        raws = self.redis.mget([self.keys.sweep(i) for i in ids]) if ids else []
        return [sweep for sweep in map(decode, raws) if sweep], int(total)

    def all_sweeps(self) -> list[Sweep]:
        ids = cast(list[str], self.redis.zrange(self.keys.sweeps(), 0, -1))
        raws = self.redis.mget([self.keys.sweep(i) for i in ids]) if ids else []
        return [sweep for sweep in map(decode, raws) if sweep]

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

        return transact(self.redis, transaction, key)

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

    def record_trial(self, sweep_id: UUID, trial: TrialRecord) -> tuple[TrialRecord, bool]:
        """Record trial ``trial.number`` (its job, if any, exists already: the job store
        created it). Returns the recorded trial and whether this call recorded it (a
        retry, or a second process finishing the same number, gets the first one's
        record). A sweep cancelled meanwhile records the trial ``cancelled``; the caller
        cancels its job."""
        created = False

        def change(sweep: Sweep) -> Sweep | None:
            nonlocal created  # the transaction may re-run: the last run decides
            created = False
            if sweep.trial(trial.number) is not None:
                return None
            record = trial
            if sweep.cancel_requested and not trial.state.finished:
                record = trial.model_copy(update={"state": TrialState.cancelled})
            sweep.pending.pop(trial.number, None)
            if trial.number in sweep.waiting:
                sweep.waiting.remove(trial.number)
            sweep.trials = sorted([*sweep.trials, record], key=lambda t: t.number)
            created = True
            return sweep

        sweep = self.update(sweep_id, change)
        recorded = sweep.trial(trial.number)
        assert recorded is not None
        return recorded, created

    def park(self, sweep_id: UUID, number: int) -> None:
        """Trial ``number`` could not be queued (``MAX_QUEUED_JOBS`` reached): it waits,
        still counted against ``parallel``, and every later step tries it again."""

        def change(sweep: Sweep) -> Sweep | None:
            if sweep.trial(number) is not None or number in sweep.waiting:
                return None
            sweep.pending.pop(number, None)
            sweep.waiting.append(number)
            return sweep

        self.update(sweep_id, change)

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
