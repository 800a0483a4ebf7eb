"""Input drift as clients read it: a model's window against its reference profile.

Every model has a reference profile on its card: written by the worker at training
time (shared/ml/drift.py, from its training and test data), or carried in an imported
file. A model that came without one (trained before profiles were kept, or imported
from such a file) gets one on first need, computed from MNIST (the data every model
here learns from) and kept in its registry entry, so that it is computed once: the
first process to store one wins, any other computation is dropped. A rebuilt registry
(Redis lost its data) computes it again, with the same result.
"""

import logging
import threading
from collections.abc import Callable
from uuid import UUID

from shared.data.mnist import Mnist
from shared.drift.windows import DriftWindows
from shared.ml import drift
from shared.registry.service import Models
from shared.registry.store import ModelNotFound
from shared.schemas.common import utcnow
from shared.schemas.models import DriftReport, ModelInfo, ReferenceProfile

log = logging.getLogger(__name__)


class DriftMonitor:
    """Reports of input drift for any model, from the windows and the registry."""

    def __init__(
        self,
        windows: DriftWindows,
        models: Models,
        mnist: Callable[[], Mnist],
        threshold: float,
        min_samples: int,
    ) -> None:
        self.windows, self.models, self.mnist = windows, models, mnist
        self.threshold, self.min_samples = threshold, min_samples
        self._computing = threading.Lock()  # one profile computation at a time per process

    def profile(self, info: ModelInfo, compute: bool = True) -> ReferenceProfile | None:
        """The model's reference profile; without one, computed from MNIST and kept
        (``compute``), else None. Raises what loading the model or MNIST raises
        (``ModelFileError``, ``StoreUnavailable``, ``MnistError``) and
        :class:`ModelNotFound` if the model went meanwhile."""
        if info.reference_profile is not None or not compute:
            return info.reference_profile
        with self._computing:
            fresh = self.models.registry.get_model(info.id)
            if fresh is None or fresh.deleting:
                raise ModelNotFound(str(info.id))
            if fresh.reference_profile is not None:  # another request computed it
                return fresh.reference_profile
            model = self.models.load(fresh)
            data = self.mnist()
            log.info("model %s has no reference profile: computing one from MNIST", info.id)
            profile = drift.reference_profile(
                data.train_images,
                data.test_images,
                model.weights,
                model.input_scale,
                source="mnist",
                now=utcnow(),
            )
            kept = self.models.registry.keep_reference_profile(info.id, profile)
            if kept is None:
                raise ModelNotFound(str(info.id))
            return kept

    def report(self, model_id: UUID, compute: bool = True) -> DriftReport | None:
        """The model's window against its reference profile; None when it has no profile
        and ``compute`` is off. :class:`ModelNotFound` for an unknown model."""
        info = self.models.registry.get_model(model_id)
        if info is None or info.deleting:
            raise ModelNotFound(str(model_id))
        profile = self.profile(info, compute)
        if profile is None:
            return None
        window = self.windows.read(model_id)
        return drift.report(
            model_id, profile, window.rows, window.since, self.threshold, self.min_samples
        )

    def reports(self) -> list[DriftReport]:
        """Every model with a window and a profile (for ``/metrics``: nothing is
        computed; a model deleted meanwhile is left out)."""
        found = []
        for model_id in self.windows.observed():
            try:
                report = self.report(model_id, compute=False)
            except ModelNotFound:
                continue
            if report is not None:
                found.append(report)
        return found
