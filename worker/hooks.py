"""What runs at every epoch boundary of a job, beside the trainer: each a small object
with one concern, called in order by :class:`EpochHooks`. A hook that must end the run
raises :class:`Stop` with how the job ends; the training loop knows nothing of them.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

from shared.artifacts.base import StoreUnavailable
from shared.jobs.checkpoints import Checkpoints
from shared.jobs.leases import Fence, Leases
from shared.jobs.store import JobStore
from shared.ml.training import TrainState
from shared.schemas.jobs import EpochRecord
from shared.sweeps.study import TrialMonitor

log = logging.getLogger(__name__)


class Ending(StrEnum):
    """How a run that stops early ends."""

    cancelled = "cancelled"  # a client asked
    pruned = "pruned"  # the sweep's pruner asked
    stopping = "stopping"  # the worker shuts down: checkpointed, back to the queue
    lost = "lost"  # another worker holds the job now: leave it alone


class Stop(Exception):
    """Raised from an epoch hook: the run ends here, as ``ending`` says."""

    def __init__(self, ending: Ending, epoch: int) -> None:
        super().__init__(f"{ending.value} after epoch {epoch}")
        self.ending, self.epoch = ending, epoch


class Hook:
    def __call__(self, state: TrainState, record: EpochRecord) -> None:
        raise NotImplementedError


class Heartbeat:
    """Renews the job's lease from a thread while the main thread trains, and notices a
    lost lease and the worker's warm shutdown."""

    def __init__(
        self, leases: Leases, job_id: UUID, holder: str, worker: str, every: float, ttl: float
    ) -> None:
        self.leases, self.job_id, self.holder, self.worker = leases, job_id, holder, worker
        self.every, self.ttl = every, ttl
        self.lost = threading.Event()
        self.stopping = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.every):
            try:
                if not self.leases.renew(self.job_id, self.holder, self.ttl):
                    self.lost.set()
                if self.leases.worker_stopping(self.worker):
                    self.stopping.set()
            except Exception as exc:  # Redis away for a moment: the lease TTL decides
                log.warning("job %s: heartbeat failed: %s", self.job_id, exc)


@dataclass
class Progress(Hook):
    """The epoch's history row and the job's ``epoch``, written with the job's fence (with
    the rows before it, should a failover have lost some)."""

    jobs: JobStore
    job_id: UUID
    epochs: int
    fence: Fence

    def __call__(self, state: TrainState, record: EpochRecord) -> None:
        earlier = state.history[: record.epoch - 1]
        self.jobs.record_epoch(self.job_id, record, fence=self.fence, earlier=earlier)
        log.info(
            "job %s: epoch %d/%d cost %.4f (%.3fs)",
            self.job_id,
            record.epoch,
            self.epochs,
            record.cost,
            record.seconds,
        )


@dataclass
class LeaseWatch(Hook):
    beat: Heartbeat

    def __call__(self, state: TrainState, record: EpochRecord) -> None:
        if self.beat.lost.is_set():
            raise Stop(Ending.lost, record.epoch)


@dataclass
class CancelWatch(Hook):
    cancel_requested: Callable[[], bool]

    def __call__(self, state: TrainState, record: EpochRecord) -> None:
        if self.cancel_requested():
            raise Stop(Ending.cancelled, record.epoch)


@dataclass
class PruneWatch(Hook):
    """A sweep's trial: stop where the pruner says, but never after the last epoch (a
    finished trial completes: nothing to save by stopping it)."""

    monitor: TrialMonitor
    epochs: int

    def __call__(self, state: TrainState, record: EpochRecord) -> None:
        if record.epoch < self.epochs and self.monitor.should_prune(
            record.epoch, record.val_accuracy
        ):
            raise Stop(Ending.pruned, record.epoch)


@dataclass
class CheckpointTimer(Hook):
    """A checkpoint every ``every`` seconds at the latest, and at once when the worker
    shuts down. A store that is away for a moment costs a checkpoint, not the job."""

    checkpoints: Checkpoints
    job_id: UUID
    epochs: int
    fence: Fence
    every: float
    stopping: threading.Event
    clock: Callable[[], float] = time.monotonic
    last: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.last = self.clock()

    def __call__(self, state: TrainState, record: EpochRecord) -> None:
        due = self.clock() - self.last >= self.every
        if state.epoch >= self.epochs or not (due or self.stopping.is_set()):
            return
        try:
            self.checkpoints.save(self.job_id, state, self.fence)
        except StoreUnavailable as exc:
            log.warning("job %s: checkpoint skipped, the store is away: %s", self.job_id, exc)
            return
        self.last = self.clock()


@dataclass
class StoppingWatch(Hook):
    stopping: threading.Event

    def __call__(self, state: TrainState, record: EpochRecord) -> None:
        if self.stopping.is_set():
            raise Stop(Ending.stopping, record.epoch)


@dataclass
class EpochHooks:
    """The hooks in order: the row first (a stop still shows the epoch it ran), then
    the reasons to stop, the checkpoint before a warm shutdown's stop."""

    hooks: Sequence[Hook]

    def __call__(self, state: TrainState, record: EpochRecord) -> None:
        for hook in self.hooks:
            hook(state, record)
