"""The promotion gate's rule, as pure functions: does a candidate take an alias from its
incumbent? (The registry applies it inside one transaction: shared/registry/store.py.)"""

from shared.schemas.models import ModelInfo


def gate(
    accuracy: float | None,
    has_incumbent: bool,
    incumbent_accuracy: float | None,
    min_gain: float,
) -> tuple[bool, str]:
    """Promote when the alias has no target, or the candidate's figure is at least the
    incumbent's plus ``min_gain``; the reason either way."""
    if not has_incumbent:
        return True, "the alias had no target"
    if accuracy is None:
        return False, "the candidate has no accuracy to compare"
    if incumbent_accuracy is None:
        return True, "the incumbent has no accuracy to compare (or is gone)"
    needed = incumbent_accuracy + min_gain
    if accuracy >= needed:
        return True, f"{accuracy:.4f} >= {incumbent_accuracy:.4f} + {min_gain:g}"
    return False, f"{accuracy:.4f} < {incumbent_accuracy:.4f} + {min_gain:g}"


def within_test_floor(
    candidate: ModelInfo, incumbent: ModelInfo, max_drop: float, reason: str
) -> tuple[bool, str]:
    """PROMOTION_MAX_TEST_DROP: whatever the metric, MNIST test accuracy may not fall more."""
    floor_of = incumbent.test_accuracy
    if floor_of is None:
        return True, reason
    if candidate.test_accuracy is None:
        return False, "the candidate has no test accuracy to hold against the incumbent's"
    if candidate.test_accuracy < floor_of - max_drop:
        return False, (
            f"test accuracy {candidate.test_accuracy:.4f} fell below the incumbent's "
            f"{floor_of:.4f} by more than {max_drop:g} (PROMOTION_MAX_TEST_DROP)"
        )
    return True, reason
