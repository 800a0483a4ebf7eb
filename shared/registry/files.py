"""Model files in the artifact store: the source of truth for trained models.

A model is ``<id>.npz`` (float32 weights plus a JSON metadata string; nothing
pickled) and ``<id>.sha256``, written after it, which marks the model as complete
and lets the registry be rebuilt from a listing of the store alone. Both are written
once (a conditional put): two writers can never overwrite each other's model. Every
read is verified, whatever the store: the sha256 the registry recorded first, then the
one validator, :func:`parse_model`.
"""

import io
import logging
import re
from dataclasses import dataclass
from uuid import UUID

import numpy as np
from pydantic import ValidationError

from shared.artifacts.base import ArtifactExists, ArtifactNotFound, ArtifactStore, ArtifactTooLarge
from shared.artifacts.cache import VerifiedCache
from shared.files import sha256_bytes
from shared.ml import mlp
from shared.registry import npz
from shared.schemas.common import N_CLASSES, N_PIXELS
from shared.schemas.models import ModelMeta

log = logging.getLogger(__name__)

WEIGHT_NAMES = ("w1", "b1", "w2", "b2")
MAX_MODEL_BYTES = 64 * 1024 * 1024
"""Largest model file read (1,024 hidden units in float64 is about 14 MB)."""
_COMPLETE = re.compile(r"^([0-9a-f-]{36})\.sha256$")


class ModelFileError(RuntimeError):
    """A model file that is missing, unreadable or fails its integrity check."""


class InvalidModel(ModelFileError):
    """Bytes that are not a model: wrong arrays, shapes, dtypes, values or metadata."""


class ModelTooLarge(InvalidModel):
    """Bytes that would take more memory than any model may: refused unread."""


@dataclass(frozen=True)
class LoadedModel:
    id: UUID
    weights: mlp.Weights
    meta: ModelMeta
    sha256: str
    size_bytes: int

    @property
    def input_scale(self) -> float:
        return self.meta.input_scale


def expected_shapes(n_hidden: int) -> dict[str, tuple[int, ...]]:
    return {
        "w1": (n_hidden, N_PIXELS),
        "b1": (n_hidden,),
        "w2": (N_CLASSES, n_hidden),
        "b2": (N_CLASSES,),
    }


def parse_model(payload: bytes) -> tuple[mlp.Weights, ModelMeta]:
    """The one check of whether bytes are a model, wherever they come from (our worker,
    an operator's copy, an import): exactly the arrays ``meta, w1, b1, w2, b2``, nothing
    pickled, w1 ``(hidden, 784)``, b1 ``(hidden,)``, w2 ``(10, hidden)``, b2 ``(10,)``,
    float32 or float64, values finite in float32 (what the API computes in) and small
    enough that no image makes a prediction overflow (:func:`overflowing_layer`), and
    metadata that validates as :class:`ModelMeta` with ``params.n_hidden`` equal to the
    arrays' hidden size. Sizes are checked from the zip directory and the arrays'
    headers before a byte of any array is read (shared/registry/npz.py).

    Raises :class:`ModelTooLarge` or :class:`InvalidModel` saying what is wrong.
    """
    if len(payload) > MAX_MODEL_BYTES:
        raise ModelTooLarge(f"larger than {MAX_MODEL_BYTES} bytes")
    try:
        with npz.Archive(payload, {"meta", *WEIGHT_NAMES}) as archive:
            raw_meta = archive.text("meta")
            try:
                meta = ModelMeta.model_validate_json(raw_meta)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise InvalidModel(
                    f"metadata invalid at {where or 'top'}: {first['msg']}"
                ) from None
            shapes = expected_shapes(meta.params.n_hidden)
            arrays = {name: archive.floats(name, shape) for name, shape in shapes.items()}
    except npz.TooLarge as exc:
        raise ModelTooLarge(str(exc)) from None
    except npz.Invalid as exc:
        raise InvalidModel(str(exc)) from None
    weights = mlp.Weights(*(arrays[name] for name in WEIGHT_NAMES))
    overflowing = overflowing_layer(weights, meta.input_scale)
    if overflowing is not None:
        raise InvalidModel(f"weights so large that the {overflowing} could overflow float32")
    return weights, meta


def overflowing_layer(w: mlp.Weights, input_scale: float) -> str | None:
    """Which layer's sums could leave float32's range for some image, or None.

    Finite weights are not enough: 784 pixels of 255 times weights of 1e36 overflow,
    and ``inf - inf`` answers NaN. A sum of magnitudes bounds every partial sum in any
    order of addition, so a bound below half of float32's largest keeps the serving
    path finite (pixels 0..255 times ``input_scale``, hidden activations 0..1). No
    trained model comes near it (a row of ``w1`` would need magnitudes of ~1e33).
    """
    limit = npz.FLOAT32_MAX / 2
    hidden = 255.0 * input_scale * np.abs(w.w1).sum(axis=1, dtype=np.float64)
    if float(np.max(hidden + np.abs(w.b1), initial=0.0)) > limit:
        return "hidden layer"
    logits = np.abs(w.w2).sum(axis=1, dtype=np.float64) + np.abs(w.b2)
    if float(np.max(logits, initial=0.0)) > limit:
        return "output layer"
    return None


def encode(weights: mlp.Weights, meta: ModelMeta) -> bytes:
    """A model's bytes: float32 weights and the metadata as a JSON string."""
    buffer = io.BytesIO()
    arrays = {name: getattr(weights, name).astype(np.float32) for name in WEIGHT_NAMES}
    np.savez(buffer, meta=np.array(meta.model_dump_json()), **arrays)
    return buffer.getvalue()


def _npz(model_id: UUID) -> str:
    # str(UUID) is hex and dashes only: no id can name a key outside the models'
    return f"{UUID(str(model_id))}.npz"


def _checksum(model_id: UUID) -> str:
    return f"{UUID(str(model_id))}.sha256"


class ModelFiles:
    """Model bytes by id in an artifact store, with a host's cache of verified bytes in
    front of a network store (shared/artifacts/cache.py)."""

    def __init__(self, store: ArtifactStore, cache: VerifiedCache | None = None) -> None:
        self.store, self.cache = store, cache

    def write(self, model_id: UUID, payload: bytes) -> tuple[str, int]:
        """Write a model's bytes once, then its checksum (which marks it complete);
        returns the sha256 and size. The same bytes again (a retried write) are fine;
        other bytes under the id raise :class:`ArtifactExists`."""
        digest = sha256_bytes(payload)
        for key, data in (
            (_npz(model_id), payload),
            (_checksum(model_id), f"{digest}  {_npz(model_id)}\n".encode()),
        ):
            try:
                self.store.put(key, data, if_absent=True)
            except ArtifactExists:
                if self.store.get(key, max_bytes=MAX_MODEL_BYTES) != data:
                    raise
        return digest, len(payload)

    def save(self, model_id: UUID, weights: mlp.Weights, meta: ModelMeta) -> tuple[str, int]:
        return self.write(model_id, encode(weights, meta))

    def read_verified(self, model_id: UUID, expected_sha256: str | None = None) -> bytes:
        """The model's bytes exactly as stored, after the sha256 check."""
        return self._verified(model_id, expected_sha256)[0]

    def _verified(self, model_id: UUID, expected_sha256: str | None) -> tuple[bytes, str]:
        """The bytes and their sha256. Errors name the model and the kind of failure
        only: their text reaches clients (503s, ``/readyz``), so keys, addresses and
        digests go to the log instead."""
        if expected_sha256 is not None and self.cache is not None:
            cached = self.cache.get(expected_sha256)
            if cached is not None:
                return cached, expected_sha256
        try:
            payload = self.store.get(_npz(model_id), max_bytes=MAX_MODEL_BYTES)
        except ArtifactNotFound as exc:
            log.warning("model %s: %s is missing from %s", model_id, _npz(model_id), self.store.uri)
            raise ModelFileError(f"model {model_id}: file missing") from exc
        except ArtifactTooLarge as exc:
            raise ModelFileError(f"model {model_id}: file too large") from exc
        except OSError as exc:
            log.warning("model %s: cannot read it: %s", model_id, exc)
            raise ModelFileError(f"model {model_id}: file unreadable") from exc
        recorded = self.recorded_sha256(model_id) if expected_sha256 is None else None
        if expected_sha256 is None and recorded is None:
            raise ModelFileError(f"model {model_id}: no checksum recorded, refusing to load")
        digest = sha256_bytes(payload)
        expected = expected_sha256 or recorded
        if digest != expected:
            log.warning(
                "model %s: %s has sha256 %s, expected %s",
                model_id,
                self.store.uri,
                digest,
                expected,
            )
            raise ModelFileError(f"model {model_id}: integrity check failed")
        if self.cache is not None:
            self.cache.put(digest, payload)
        return payload, digest

    def load(self, model_id: UUID, expected_sha256: str | None = None) -> LoadedModel:
        """Read, verify and validate a model; raises :class:`ModelFileError` on any fault."""
        payload, digest = self._verified(model_id, expected_sha256)
        try:
            weights, meta = parse_model(payload)
        except InvalidModel as exc:
            raise InvalidModel(f"model {model_id}: {exc}") from None
        return LoadedModel(model_id, weights, meta, digest, len(payload))

    def delete(self, model_id: UUID) -> None:
        """Remove the checksum (the model is no longer complete), then the weights."""
        self.store.delete(_checksum(model_id))
        self.store.delete(_npz(model_id))

    def recorded_sha256(self, model_id: UUID) -> str | None:
        try:
            text = self.store.get(_checksum(model_id), max_bytes=4096).decode(errors="replace")
        except ArtifactNotFound:
            return None
        return text.split()[0] if text.split() else None

    def exists(self, model_id: UUID) -> bool:
        return self.store.exists(_npz(model_id)) or self.store.exists(_checksum(model_id))

    def model_ids(self) -> list[UUID]:
        """Ids of complete models (weights and checksum both present), from a listing."""
        keys = set(self.store.list())
        ids = []
        for key in sorted(keys):
            match = _COMPLETE.match(key)
            if match and f"{match.group(1)}.npz" in keys:
                try:
                    ids.append(UUID(match.group(1)))
                except ValueError:
                    continue
        return ids
