"""Sweeps against a real, private Redis: the atomic next-trial step under concurrent
threads, advance from two processes at once, recovery of a half-done step, and
a whole sweep driven in-process through the worker's run_job on real MNIST."""

import threading
import uuid
from datetime import timedelta

import pytest
from optuna.storages.journal import JournalRedisBackend

from shared.schemas.common import utcnow
from shared.schemas.jobs import EpochRecord, Job, JobEnd, JobStatus
from shared.schemas.params import TrainParams
from shared.schemas.sweeps import Sweep, SweepRequest, SweepStatus, TrialRecord, TrialState
from shared.services import Services
from shared.submission import Submitter
from shared.sweeps.store import SweepStore
from shared.sweeps.study import Studies
from shared.sweeps.sweeper import Sweeper, trial_job_id
from tests.unit.test_jobs import with_settings
from worker.run import run_job


class Queue:
    """Stands in for the broker: remembers the job ids sent, in order."""

    def __init__(self) -> None:
        self.sent: list[uuid.UUID] = []
        self._lock = threading.Lock()

    def send(self, job_id: uuid.UUID) -> None:
        with self._lock:
            self.sent.append(job_id)


def sweeper(services: Services, queue: Queue) -> Sweeper:
    """A process's sweeper (its own Optuna storages), sending to ``queue``."""
    submit = Submitter(services.jobs, services.registry, queue, services.settings)  # type: ignore[arg-type]
    studies = Studies(services.redis, services.keys, services.sweeps.studies.journal)
    return Sweeper(SweepStore(services.redis, services.keys), studies, submit)


def request(**changes: object) -> SweepRequest:
    body: dict = {
        "base": {"epochs": 2, "train_size": 1000, "minibatches": 10, "input_scaling": "unit"},
        "space": {"eta": {"low": 0.001, "high": 0.1, "log": True}},
        "trials": 6,
        "parallel": 2,
        "seed": 7,
    }
    return SweepRequest.model_validate({**body, **changes})


def one_choice(trials: int, seed: int) -> SweepRequest:
    """A sweep of one-epoch trials, one at a time, all with the same eta."""
    base, space = {"epochs": 1, "train_size": 500}, {"eta": {"choices": [0.1]}}
    return request(base=base, space=space, trials=trials, parallel=1, seed=seed)


def started(services: Services, **changes: object) -> tuple[Sweeper, Queue, Sweep]:
    """A process's sweeper, the queue it sends to, and the sweep ``request(**changes)``
    it created."""
    queue = Queue()
    sweeps = sweeper(services, queue)
    return sweeps, queue, sweeps.create(request(**changes))


def stored(sweeps: Sweeper, sweep_id: uuid.UUID) -> Sweep:
    """The sweep's record, which must be there: a missing one fails the test here."""
    record = sweeps.store.get(sweep_id)
    assert record is not None
    return record


def test_next_trial_step_is_atomic_under_concurrent_threads(services: Services) -> None:
    """Eight threads take numbers and end trials as fast as they can: every number
    below ``trials`` is handed out exactly once and never more than ``parallel``
    trials are active."""
    store = SweepStore(services.redis, services.keys)
    req = request(trials=60, parallel=3)
    sweep = Sweep(id=uuid.uuid4(), request=req, base=TrainParams(), seed=1)
    store.create(sweep)
    handed: list[int] = []
    active, most = 0, 0
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        nonlocal active, most
        start.wait()
        while True:
            number = store.reserve(sweep.id)
            if number is None:
                current = store.get(sweep.id)
                assert current is not None
                if current.asked >= req.trials:
                    return
                continue  # full for now: another thread will end a trial
            with lock:
                handed.append(number)
                active += 1
                most = max(most, active)
            trial = TrialRecord(number=number, params={}, state=TrialState.queued)
            recorded, created = store.record_trial(sweep.id, trial)
            assert created and recorded.number == number
            with lock:
                active -= 1  # before the record says so: the local count never lags behind
            store.end_trial(
                sweep.id, number, trial.model_copy(update={"state": TrialState.complete})
            )

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(handed) == list(range(req.trials))
    assert 1 <= most <= req.parallel
    final = store.get(sweep.id)
    assert final is not None and [t.number for t in final.trials] == list(range(req.trials))
    assert final.pending == {} and final.active() == 0


def end_job(sweeper: Sweeper, job_id: uuid.UUID, val_accuracy: float) -> None:
    """A trial's job ends as a worker would leave it (one epoch, no model)."""
    record = EpochRecord(epoch=1, cost=1.0, seconds=0.01, eta=0.01, val_accuracy=val_accuracy)
    sweeper.jobs.record_epoch(job_id, record)
    sweeper.jobs.finish(job_id, JobStatus.succeeded)


def test_two_processes_advancing_at_once_start_neither_three_nor_one(
    services: Services,
) -> None:
    """Both running trials end at once and two 'workers' advance the sweep together:
    exactly two new trials start, with the next two numbers, each with one job."""
    queue = Queue()
    first = sweeper(services, queue)
    second = sweeper(services, queue)
    sweep = first.create(request(trials=6, parallel=2))
    assert [j for j in queue.sent] == [trial_job_id(sweep.id, 0), trial_job_id(sweep.id, 1)]
    values = {}
    while len(queue.sent) < 6 or first.store.get(sweep.id).active():  # type: ignore[union-attr]
        running = [j for j in queue.sent if not first.jobs.get(j).status.finished]  # type: ignore[union-attr]
        assert len(running) == 2 or len(queue.sent) >= 5
        for job_id in running:
            job = first.jobs.get(job_id)
            assert job is not None and job.sweep_id == sweep.id
            values[job.trial] = 0.5 + 0.01 * (job.trial or 0)
            end_job(first, job_id, values[job.trial])  # type: ignore[index]
        go = threading.Barrier(2)

        def advance(s: Sweeper, go: threading.Barrier = go) -> None:
            go.wait()
            s.advance(sweep.id)

        threads = [threading.Thread(target=advance, args=(s,)) for s in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(queue.sent) == len(set(queue.sent)) == 6
    final = first.store.get(sweep.id)
    assert final is not None and final.status is SweepStatus.succeeded
    assert [t.number for t in final.trials] == list(range(6))
    assert all(t.state is TrialState.complete for t in final.trials)
    assert final.best is not None and final.best.number == 5 and final.best.value == values[5]
    study = first.studies.study(final)
    assert len(study.trials) == 6  # one Optuna trial per number, none asked twice
    assert sorted(t.user_attrs["mnist_trial"] for t in study.trials) == list(range(6))


def test_a_number_left_pending_by_a_dead_process_is_finished_once(
    services: Services,
) -> None:
    """A process took number 1 and died before creating its trial: the next advance
    after the grace period creates it, with the job id the dead one would have used."""
    sweeps, queue, sweep = started(services, trials=3, parallel=1)
    assert queue.sent == [trial_job_id(sweep.id, 0)]
    end_job(sweeps, queue.sent[0], 0.6)
    sweeps._reconcile(sweeps.store.get(sweep.id))  # type: ignore[arg-type]
    assert sweeps.store.reserve(sweep.id) == 1  # ... and then the process died
    sweeps.advance(sweep.id)
    assert len(queue.sent) == 1  # within the grace period: its owner may still be at it

    def backdate(record: Sweep) -> Sweep:
        record.pending = {n: at - timedelta(minutes=5) for n, at in record.pending.items()}
        return record

    sweeps.store.update(sweep.id, backdate)
    sweeps.advance(sweep.id)
    sweeps.advance(sweep.id)
    assert queue.sent == [trial_job_id(sweep.id, 0), trial_job_id(sweep.id, 1)]
    record = stored(sweeps, sweep.id)
    assert record.pending == {}
    assert [t.number for t in record.trials] == [0, 1]


def test_a_trial_whose_message_was_never_sent_is_sent_again(
    services: Services,
) -> None:
    sweeps, queue, sweep = started(services, trials=2, parallel=1)

    def unsend(record: Sweep) -> Sweep:  # as if the process died before sending
        record.trials[0].sent = False
        record.trials[0].created_at = utcnow() - timedelta(minutes=1)
        return record

    sweeps.store.update(sweep.id, unsend)
    sweeps.advance(sweep.id)
    assert queue.sent == [trial_job_id(sweep.id, 0)] * 2
    assert stored(sweeps, sweep.id).trials[0].sent


def test_cancel_between_reservation_and_trial_records_it_cancelled(
    services: Services,
) -> None:
    sweeps, queue, sweep = started(services, trials=3, parallel=2)
    first_job = queue.sent[0]
    sweeps.cancel(sweep.id)
    record = stored(sweeps, sweep.id)
    assert record.status is SweepStatus.cancelled
    assert {t.state for t in record.trials} == {TrialState.cancelled}
    job = sweeps.jobs.get(first_job)
    assert job is not None and job.status is JobStatus.cancelled


# ------------------------------------------------------------ real training, in-process


def drive(sweeps: Sweeper, queue: Queue, services: Services) -> list[Job]:
    """Run every queued trial with the worker's own code, one at a time, as a single
    worker with concurrency 1 would (advancing the sweep after each, as its task does);
    returns the jobs in the order they ran."""
    ran = []
    while queue.sent:
        job_id = queue.sent.pop(0)
        run_job(job_id, services)
        job = services.jobs.get(job_id)
        assert job is not None and job.sweep_id is not None
        sweeps.advance(job.sweep_id)
        ran.append(job)
    return ran


@pytest.mark.usefixtures("mnist_data")
def test_median_pruner_stops_hopeless_trials_at_an_epoch_boundary(services: Services) -> None:
    """Half the grid learns (eta 0.05), half cannot (eta 1e-7); one trial at a time.
    Once one good trial has completed, a hopeless one is below the median at its
    first prunable epoch and stops there, with no model."""
    services = with_settings(services, checkpoint_seconds=0)
    sweeps, queue, sweep = started(
        services,
        base={
            "epochs": 5,
            "train_size": 2000,
            "minibatches": 20,
            "input_scaling": "unit",
            "validation_fraction": 0.2,
        },
        space={"eta": {"choices": [0.05, 1e-7]}, "seed": {"choices": [1, 2, 3]}},
        sampler="grid",
        trials=6,
        parallel=1,
        pruner_startup_trials=1,
        pruner_warmup_epochs=1,
    )
    ran = drive(sweeps, queue, services)
    final = stored(sweeps, sweep.id)
    assert final.status is SweepStatus.succeeded
    assert [t.number for t in final.trials] == list(range(6)) and len(ran) == 6
    pruned = [t for t in final.trials if t.state is TrialState.pruned]
    assert pruned, [(t.params, t.state, t.value) for t in final.trials]
    for trial in pruned:
        job = sweeps.jobs.get(trial.job_id)  # type: ignore[arg-type]
        assert job is not None and job.status is JobStatus.cancelled and job.model_id is None
        assert job.pruned_at_epoch == trial.epochs_run == 2 < 5  # first epoch past warm-up
        assert trial.params["eta"] == 1e-7
    complete = [t for t in final.trials if t.state is TrialState.complete]
    assert final.best is not None
    assert final.best.value == max(t.value for t in complete)  # type: ignore[type-var]
    assert final.best.params["eta"] == 0.05 and final.best.model_id is not None


def run_out(sweeps: Sweeper, queue: Queue, sweep_id: uuid.UUID, fail: set[int]) -> Sweep:
    """End every queued trial (trials in ``fail`` with an error) until the sweep ends."""
    while queue.sent:
        job_id = queue.sent.pop(0)
        job = sweeps.jobs.get(job_id)
        assert job is not None and job.trial is not None
        if job.trial in fail:
            sweeps.jobs.finish(job_id, JobStatus.failed, JobEnd(error="RuntimeError: boom"))
        else:
            end_job(sweeps, job_id, 0.5 + job.trial / 100)
        sweeps.advance(sweep_id)
    return stored(sweeps, sweep_id)


def test_failed_trials_do_not_fail_the_sweep_unless_all_failed(
    services: Services,
) -> None:
    sweeps, queue, some = started(services, trials=4, parallel=2)
    final = run_out(sweeps, queue, some.id, fail={0, 2})
    assert final.status is SweepStatus.succeeded
    assert [t.state for t in final.trials] == [
        TrialState.failed,
        TrialState.complete,
        TrialState.failed,
        TrialState.complete,
    ]
    assert final.trials[0].error == "RuntimeError: boom"
    assert final.best is not None and final.best.number == 3
    every = sweeps.create(request(trials=3, parallel=2))
    final = run_out(sweeps, queue, every.id, fail={0, 1, 2})
    assert final.status is SweepStatus.failed and final.best is None
    assert final.error == "no trial completed: 3 failed" and final.settled


def test_a_process_reads_a_sweeps_journal_once_not_at_every_step(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each trial step (ask, tell) used to build a new storage and replay the whole
    journal from Redis; a process's sweeper now reads each journal entry once, and
    afterwards only what was appended since."""
    read: list[int] = []
    read_logs = JournalRedisBackend.read_logs

    def counted(self: JournalRedisBackend, log_number_from: int):  # type: ignore[no-untyped-def]
        for entry in read_logs(self, log_number_from):
            read.append(log_number_from)
            yield entry

    monkeypatch.setattr(JournalRedisBackend, "read_logs", counted)
    sweeps, queue, sweep = started(services, trials=6, parallel=2)
    final = run_out(sweeps, queue, sweep.id, fail=set())
    assert final.status is SweepStatus.succeeded and len(final.trials) == 6
    entries = int(services.redis.get(f"{services.keys.sweep_optuna(sweep.id)}:log_number")) + 1
    assert entries > 20  # six trials asked, valued and told: a few entries each
    assert len(read) <= entries  # no entry read twice: one replay in all, not one per step
    read.clear()
    other = sweeper(services, queue)  # another process reads the journal once, itself
    other.studies.study(final)
    other.studies.study(final)
    assert len(read) == entries
