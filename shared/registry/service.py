"""What the service does with models, keeping the artifact store and the registry
together: publish a trained model, import one, delete one, retention, and the rebuild
that reconciles the two both ways (a Redis that lost its data serves the same models
again; an entry whose files are gone stops being listed).

Order of writes, so that a crash anywhere leaves nothing a reader can trust wrongly:
files first, then the entry (a model is listed only once its files are complete);
on deletion the entry is marked first (nothing may serve or take it), then the files
go, then the entry.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from uuid import UUID

from shared.artifacts.base import ArtifactExists
from shared.jobs.leases import Fence
from shared.ml import mlp
from shared.registry.aliases import Aliases
from shared.registry.canary import NoSplit, Splits
from shared.registry.files import LoadedModel, ModelFileError, ModelFiles, encode, parse_model
from shared.registry.store import ModelBroken, ModelInUse, ModelNotFound, ModelRegistry
from shared.schemas.canary import CanaryRequest, SplitView
from shared.schemas.common import utcnow
from shared.schemas.models import Alias, ModelInfo, ModelMeta

log = logging.getLogger(__name__)


class ImportRefused(ValueError):
    """The bytes are not an importable model (the reason is the message)."""


def model_info(model: LoadedModel, **facts: object) -> ModelInfo:
    """The registry entry of a stored model: its metadata plus file facts."""
    return ModelInfo(
        **model.meta.model_dump(),
        id=model.id,
        sha256=model.sha256,
        size_bytes=model.size_bytes,
        **facts,
    )


@dataclass(frozen=True)
class Models:
    registry: ModelRegistry
    aliases: Aliases
    files: ModelFiles

    def load(self, info: ModelInfo) -> LoadedModel:
        """The model an entry describes, read and verified against the entry's sha256."""
        return self.files.load(info.id, expected_sha256=info.sha256)

    def publish(
        self, model_id: UUID, weights: mlp.Weights, meta: ModelMeta, fence: Fence | None = None
    ) -> ModelInfo:
        """A worker's model: checked by the one validator, written once, registered
        (fenced: only while the worker still holds its job).

        If the id's files exist already they were written by an earlier holder of the
        job after it passed the point of no return (its commit): that model is kept, as
        its own card describes it, rather than a second one written beside it.
        """
        payload = encode(weights, meta)
        checked_weights, checked_meta = parse_model(payload)
        try:
            digest, size = self.files.write(model_id, payload)
            model = LoadedModel(model_id, checked_weights, checked_meta, digest, size)
        except ArtifactExists:
            log.warning("model %s: an earlier holder of its job wrote it; keeping that", model_id)
            model = self.files.load(model_id)
        return self.registry.put_model(model_info(model), fence=fence)

    def set_alias(self, name: str, model_id: UUID, reason: str | None = None) -> Alias:
        """Point ``name`` at a model once its file passes its check (``ModelNotFound``;
        ``ModelBroken``, and the model marked so, if it fails)."""
        info = self.registry.get_model(model_id)
        if info is None or info.deleting:
            raise ModelNotFound(str(model_id))
        self._verify(info)
        return self.aliases.set_alias(name, model_id, reason=reason)

    def rollback(self, name: str, reason: str | None = None) -> Alias:
        """Point ``name`` back at its earlier target, once that passes its check too."""
        alias = self.aliases.get_alias(name)
        previous = alias.history[0].previous_model_id if alias and alias.history else None
        info = self.registry.get_model(previous) if previous else None
        if info is not None and not info.deleting:
            self._verify(info)
        return self.aliases.rollback(name, reason)

    @cached_property
    def splits(self) -> Splits:
        """Canary and shadow splits on the aliases (shared/registry/canary.py)."""
        return Splits(self.aliases)

    def start_split(self, name: str, request: CanaryRequest) -> SplitView:
        """Start (or change) a split on ``name`` once the candidate's file passes its
        check (``ModelNotFound``, ``ModelBroken``, ``AliasNotFound``, ``SameTarget``)."""
        info = self.registry.get_model(request.model_id)
        if info is None or info.deleting:
            raise ModelNotFound(str(request.model_id))
        self._verify(info)
        return self.splits.start(name, request)

    def promote_split(self, name: str) -> Alias:
        """Make the split's candidate the alias's target, once its file passes its check."""
        split = self.splits.get(name)
        if split is None:
            raise NoSplit(name)
        info = self.registry.get_model(split.model_id)
        if info is not None and not info.deleting:
            self._verify(info)
        return self.splits.promote(name)

    def _verify(self, info: ModelInfo) -> None:
        try:
            self.load(info)
        except ModelFileError as exc:
            self.registry.mark_broken(info.id, str(exc))
            raise ModelBroken(info.id, "its file fails its integrity check") from None

    def import_model(self, payload: bytes, source: str) -> ModelInfo:
        """An exported ``.npz``: validated like every model (bounded), its id claimed
        atomically (``IdTaken``: any job, model, deletion or other import holds it),
        written once, registered."""
        weights, meta = parse_model(payload)  # ModelTooLarge, InvalidModel
        if meta.job_id is None:
            raise ImportRefused("its metadata has no job_id (its id)")
        model_id = meta.job_id
        self.registry.claim(model_id)
        try:
            try:
                digest, size = self.files.write(model_id, payload)
            except ArtifactExists:  # an earlier import crashed before registering
                self.files.delete(model_id)
                digest, size = self.files.write(model_id, payload)
            info = model_info(
                LoadedModel(model_id, weights, meta, digest, size),
                imported_at=utcnow(),
                imported_from=source,
            )
            return self.registry.put_model(info)
        except BaseException:
            self.registry.release_claim(model_id)
            raise

    def delete(self, model_id: UUID) -> None:
        """Refused (``ModelInUse``) while an alias points at it or an active job starts
        from it, checked in the same transaction that marks it deleting; then its files,
        then its entry. A crash in between leaves it marked: the DELETE sent again (or
        retention) finishes it."""
        self.registry.mark_deleting(model_id)
        self.files.delete(model_id)
        self.registry.forget(model_id)

    def apply_retention(self, keep: int) -> list[UUID]:
        """Delete the oldest models beyond the ``keep`` newest (by registration), sparing
        any an alias points at, a split tries out or an active job starts from."""
        spared = set(self.aliases.alias_targets().values()) | self.splits.candidates()
        removed = []
        for model_id in self.registry.newest(keep)[1]:
            if model_id in spared:
                continue
            try:
                self.delete(model_id)
            except (ModelNotFound, ModelInUse):
                continue  # an alias or a job took it meanwhile, or another worker deleted it
            removed.append(model_id)
        if removed:
            log.info("retention: deleted %d model(s) beyond the %d newest", len(removed), keep)
        return removed

    def rebuild(self) -> tuple[int, int]:
        """Reconcile the registry with a listing of the store both ways: register every
        complete, valid model the registry does not know, and drop entries whose files
        are gone. Files that are not models are skipped with the reason (logged).
        Returns (added, dropped)."""
        stored = set(self.files.model_ids())
        known = set(self.registry.model_ids())
        added = dropped = 0
        for model_id in sorted(stored - known):
            if self.registry.known(model_id):
                continue  # being deleted
            try:
                model = self.files.load(model_id)
            except ModelFileError as exc:
                log.warning("not registering %s: %s", model_id, exc)
                continue
            # received now; a file cannot place itself ahead of later models by its date
            received: datetime = min(model.meta.created_at, utcnow())
            self.registry.put_model(model_info(model, registered_at=received), confirmed=False)
            added += 1
        for model_id in sorted(known - stored):
            self.registry.forget(model_id)
            log.warning("dropped model %s from the registry: its files are gone", model_id)
            dropped += 1
        if added:
            log.info("registered %d model(s) from %s", added, self.files.store.uri)
        return added, dropped
