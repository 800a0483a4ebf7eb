"""Each epoch hook of the worker on its own (worker/hooks.py), over the tests' real Redis
and a local artifact store; the run that composes them is tests/unit/test_jobs.py."""

import threading
import uuid

import pytest

from shared.artifacts.base import StoreUnavailable
from shared.artifacts.memory import MemoryStore
from shared.jobs.checkpoints import Checkpoints
from shared.jobs.leases import Fence, Superseded
from shared.ml import training
from shared.ml.training import TrainState
from shared.schemas.jobs import EpochRecord, Job, JobStatus
from shared.schemas.params import TrainParams
from shared.services import Services
from worker.hooks import (
    CancelWatch,
    CheckpointTimer,
    Ending,
    EpochHooks,
    Heartbeat,
    LeaseWatch,
    Progress,
    PruneWatch,
    Stop,
    StoppingWatch,
)

PARAMS = TrainParams(n_hidden=3, epochs=5)


def row(epoch: int) -> EpochRecord:
    return EpochRecord(epoch=epoch, cost=1.0, seconds=0.01, eta=0.1, val_accuracy=0.5)


def state_at(epoch: int) -> TrainState:
    state = training.init_state(PARAMS)
    state.epoch = epoch
    return state


@pytest.fixture
def held(services: Services) -> tuple[uuid.UUID, Fence]:
    """A running job and its holder's fence."""
    job = Job(id=uuid.uuid4(), params=PARAMS, epochs=PARAMS.epochs)
    services.jobs.create(job, max_queued=10)
    services.jobs.update(job.id, lambda j: j.model_copy(update={"status": JobStatus.running}))
    fence = services.leases.acquire(job.id, "me", 10)
    assert fence is not None
    return job.id, fence


def test_progress_writes_the_row_while_the_fence_holds(
    services: Services, held: tuple[uuid.UUID, Fence]
) -> None:
    job_id, fence = held
    hook = Progress(services.jobs, job_id, PARAMS.epochs, fence)
    hook(state_at(1), row(1))
    job, rows = services.jobs.progress(job_id, 0)
    assert job is not None and job.epoch == 1 and rows == [row(1)]
    services.leases.release(job_id, "me")
    assert services.leases.acquire(job_id, "another", 10)  # the job changes hands
    with pytest.raises(Superseded):
        hook(state_at(2), row(2))
    assert services.jobs.progress(job_id, 0)[1] == [row(1)]  # nothing more was written


def test_lease_cancel_prune_and_stopping_watches() -> None:
    beat = Heartbeat.__new__(Heartbeat)  # only its events are read
    beat.lost, beat.stopping = threading.Event(), threading.Event()
    LeaseWatch(beat)(state_at(1), row(1))
    beat.lost.set()
    with pytest.raises(Stop) as lost:
        LeaseWatch(beat)(state_at(1), row(1))
    assert lost.value.ending is Ending.lost and lost.value.epoch == 1

    CancelWatch(lambda: False)(state_at(2), row(2))
    with pytest.raises(Stop) as cancelled:
        CancelWatch(lambda: True)(state_at(2), row(2))
    assert cancelled.value.ending is Ending.cancelled

    class Pruner:
        def should_prune(self, epoch: int, val_accuracy: float | None) -> bool:
            return True

    with pytest.raises(Stop) as pruned:
        PruneWatch(Pruner(), epochs=5)(state_at(3), row(3))  # type: ignore[arg-type]
    assert pruned.value.ending is Ending.pruned and pruned.value.epoch == 3
    PruneWatch(Pruner(), epochs=5)(state_at(5), row(5))  # type: ignore[arg-type]  # last: completes

    stopping = threading.Event()
    StoppingWatch(stopping)(state_at(1), row(1))
    stopping.set()
    with pytest.raises(Stop) as stop:
        StoppingWatch(stopping)(state_at(1), row(1))
    assert stop.value.ending is Ending.stopping


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_checkpoint_timer_saves_when_due_at_shutdown_and_never_after_the_last_epoch(
    services: Services, held: tuple[uuid.UUID, Fence]
) -> None:
    job_id, fence = held
    clock, stopping = Clock(), threading.Event()
    timer = CheckpointTimer(
        services.checkpoints, job_id, PARAMS.epochs, fence, 5.0, stopping, clock=clock
    )
    timer(state_at(1), row(1))
    assert services.checkpoints.load(job_id) is None  # not due yet
    clock.now += 5
    timer(state_at(2), row(2))
    assert services.checkpoints.load(job_id).epoch == 2  # type: ignore[union-attr]
    stopping.set()
    timer(state_at(3), row(3))  # at once when the worker shuts down
    assert services.checkpoints.load(job_id).epoch == 3  # type: ignore[union-attr]
    clock.now += 60
    timer(state_at(5), row(5))  # the run is over: the model is next, not a checkpoint
    assert services.checkpoints.load(job_id).epoch == 3  # type: ignore[union-attr]


class AwayStore(MemoryStore):
    """A store whose server does not answer (a fault a real server gives only slowly)."""

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        raise StoreUnavailable("the model store is unavailable")


def test_a_store_away_costs_a_checkpoint_not_the_job(
    services: Services, held: tuple[uuid.UUID, Fence]
) -> None:
    job_id, fence = held
    away = Checkpoints(AwayStore(), services.redis, services.keys)
    timer = CheckpointTimer(away, job_id, PARAMS.epochs, fence, 0.0, threading.Event())
    timer(state_at(1), row(1))  # logged and skipped: training goes on
    assert away.load(job_id) is None


def test_hooks_run_in_order_and_the_first_stop_wins() -> None:
    seen: list[str] = []

    class Note:
        def __init__(self, name: str, stop: Ending | None = None) -> None:
            self.name, self.stop = name, stop

        def __call__(self, state: TrainState, record: EpochRecord) -> None:
            seen.append(self.name)
            if self.stop is not None:
                raise Stop(self.stop, record.epoch)

    hooks = EpochHooks(
        [Note("progress"), Note("cancel", Ending.cancelled), Note("stopping", Ending.stopping)]
    )
    with pytest.raises(Stop) as stop:
        hooks(state_at(1), row(1))
    assert seen == ["progress", "cancel"] and stop.value.ending is Ending.cancelled
