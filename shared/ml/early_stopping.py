"""Early stopping: the rule alone, as pure functions over a small immutable record.

Kept apart from the training loop (shared/training.py) so that it can be tested
with plain numbers and checkpointed as three values: a resumed run must stop at
the same epoch and keep the same weights as an uninterrupted one.

The rule (Keras' ``EarlyStopping`` with ``mode="max"``): an epoch *improves* when
its validation accuracy exceeds the best so far by more than ``min_delta``; the
run stops once ``patience`` epochs in a row have not improved, and the model keeps
the weights of the best epoch.
"""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Watch:
    """What early stopping knows after some epochs."""

    best_value: float | None = None
    best_epoch: int = 0
    stale: int = 0
    """Epochs in a row, since ``best_epoch``, that did not improve by ``min_delta``."""

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def observe(watch: Watch, epoch: int, value: float, min_delta: float) -> Watch:
    """The record after ``epoch`` reached validation accuracy ``value``."""
    if watch.best_value is None or value > watch.best_value + min_delta:
        return Watch(best_value=value, best_epoch=epoch, stale=0)
    return Watch(best_value=watch.best_value, best_epoch=watch.best_epoch, stale=watch.stale + 1)


def should_stop(watch: Watch, patience: int) -> bool:
    return watch.stale >= patience
