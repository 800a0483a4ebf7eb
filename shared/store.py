"""Model files on the shared volume: the source of truth for trained models.

A model is ``<id>.npz`` (float32 weights plus a JSON metadata string; nothing
pickled) and ``<id>.sha256``, written after it, which marks the model as
complete and lets the registry be rebuilt from the folder alone. Every load
checks the sha256 before parsing a byte.
"""

import io
import json
import logging
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import numpy as np
from pydantic import ValidationError

from shared import mlp
from shared.early_stopping import Watch
from shared.files import TMP_SUFFIX, sha256_bytes, write_bytes_atomic
from shared.schemas import N_PIXELS, EpochRecord, ModelMeta
from shared.training import TrainState

log = logging.getLogger(__name__)

STALE_TEMP_SECONDS = 3600.0
"""Age after which a temp file in MODEL_DIR is a crashed writer's leftover: no write
(a model, a checkpoint) takes anywhere near an hour between creating and renaming it."""

WEIGHT_NAMES = ("w1", "b1", "w2", "b2")
N_CLASSES = 10
MAX_MODEL_BYTES = 64 * 1024 * 1024
"""Largest model file read (1,024 hidden units in float64 is about 14 MB)."""


class ModelFileError(RuntimeError):
    """A model file that is missing, unreadable or fails its integrity check."""


class InvalidModel(ModelFileError):
    """Bytes that are not a model: wrong arrays, shapes, dtypes, values or metadata."""


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


def parse_model(payload: bytes) -> tuple[mlp.Weights, ModelMeta]:
    """The one check of whether bytes are a model, wherever they come from (our worker,
    an operator's copy, an import): exactly the arrays ``meta, w1, b1, w2, b2``, nothing
    pickled, w1 ``(hidden, 784)``, b1 ``(hidden,)``, w2 ``(10, hidden)``, b2 ``(10,)``,
    real floating dtypes, finite values, and metadata that validates as
    :class:`ModelMeta` with ``params.n_hidden`` equal to the arrays' hidden size.

    Raises :class:`InvalidModel` saying what is wrong.
    """
    if len(payload) > MAX_MODEL_BYTES:
        raise InvalidModel(f"larger than {MAX_MODEL_BYTES} bytes")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            names = set(npz.files)
            expected = {"meta", *WEIGHT_NAMES}
            if names != expected:
                raise InvalidModel(f"expected arrays {sorted(expected)}, found {sorted(names)}")
            raw_meta = npz["meta"]
            arrays = {name: npz[name] for name in WEIGHT_NAMES}
    except InvalidModel:
        raise
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidModel(f"not a readable .npz ({type(exc).__name__})") from exc
    if raw_meta.shape != () or raw_meta.dtype.kind != "U":
        raise InvalidModel("meta is not a JSON string")
    try:
        meta = ModelMeta.model_validate_json(str(raw_meta))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidModel(f"metadata invalid at {where or 'top'}: {first['msg']}") from None
    hidden = meta.params.n_hidden
    shapes = {
        "w1": (hidden, N_PIXELS),
        "b1": (hidden,),
        "w2": (N_CLASSES, hidden),
        "b2": (N_CLASSES,),
    }
    for name, shape in shapes.items():
        array = arrays[name]
        if array.dtype.kind != "f":
            raise InvalidModel(f"{name} has dtype {array.dtype}, not a real float")
        if array.shape != shape:
            raise InvalidModel(f"{name} has shape {array.shape}, expected {shape}")
        if not np.isfinite(array).all():
            raise InvalidModel(f"{name} has values that are not finite")
    return mlp.Weights(*(arrays[name] for name in WEIGHT_NAMES)), meta


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, model_id: UUID) -> Path:
        # str(UUID) is hex and dashes only: no id can name a file outside root.
        return self.root / f"{UUID(str(model_id))}.npz"

    def _checksum_path(self, model_id: UUID) -> Path:
        return self.path(model_id).with_suffix(".sha256")

    def save(self, model_id: UUID, weights: mlp.Weights, meta: ModelMeta) -> tuple[str, int]:
        """Write the model atomically; returns its sha256 and size in bytes."""
        buffer = io.BytesIO()
        arrays = {name: getattr(weights, name).astype(np.float32) for name in WEIGHT_NAMES}
        np.savez(buffer, meta=np.array(meta.model_dump_json()), **arrays)
        return self.write(model_id, buffer.getvalue())

    def write(self, model_id: UUID, payload: bytes) -> tuple[str, int]:
        """Write a model's bytes, then its checksum (which marks it complete)."""
        digest = sha256_bytes(payload)
        path = self.path(model_id)
        write_bytes_atomic(path, payload)
        write_bytes_atomic(self._checksum_path(model_id), f"{digest}  {path.name}\n".encode())
        return digest, len(payload)

    def read_verified(self, model_id: UUID, expected_sha256: str | None = None) -> bytes:
        """The model's bytes exactly as stored, after the sha256 check."""
        return self._verified(model_id, expected_sha256)[0]

    def _verified(self, model_id: UUID, expected_sha256: str | None) -> tuple[bytes, str]:
        """The bytes and their sha256. Errors name the model and the kind of failure
        only: their text reaches clients (503s, ``/readyz``), so file names, paths and
        digests go to the log instead."""
        path = self.path(model_id)
        try:
            payload = path.read_bytes()
        except FileNotFoundError as exc:
            log.warning("model %s: %s is missing", model_id, path)
            raise ModelFileError(f"model {model_id}: file missing") from exc
        except OSError as exc:
            log.warning("model %s: cannot read %s: %s", model_id, path, exc)
            raise ModelFileError(f"model {model_id}: file unreadable") from exc
        recorded = self.recorded_sha256(model_id)
        if expected_sha256 is None and recorded is None:
            raise ModelFileError(f"model {model_id}: no checksum recorded, refusing to load")
        digest = sha256_bytes(payload)
        for expected in (expected_sha256, recorded):
            if expected is not None and digest != expected:
                log.warning(
                    "model %s: %s has sha256 %s, expected %s", model_id, path, digest, expected
                )
                raise ModelFileError(f"model {model_id}: integrity check failed")
        return payload, digest

    def delete(self, model_id: UUID) -> None:
        """Remove the checksum (the model is no longer complete), then the weights."""
        self._checksum_path(model_id).unlink(missing_ok=True)
        self.path(model_id).unlink(missing_ok=True)

    def recorded_sha256(self, model_id: UUID) -> str | None:
        try:
            return self._checksum_path(model_id).read_text().split()[0]
        except (FileNotFoundError, IndexError):
            return None

    def load(self, model_id: UUID, expected_sha256: str | None = None) -> LoadedModel:
        """Read, verify and validate a model; raises :class:`ModelFileError` on any fault."""
        payload, digest = self._verified(model_id, expected_sha256)
        try:
            weights, meta = parse_model(payload)
        except InvalidModel as exc:
            raise InvalidModel(f"model {model_id}: {exc}") from None
        return LoadedModel(model_id, weights, meta, digest, len(payload))

    # checkpoints: a running job's whole state, so another worker can resume it

    def checkpoint_path(self, job_id: UUID) -> Path:
        return self.root / "checkpoints" / f"{UUID(str(job_id))}.npz"

    def save_checkpoint(self, job_id: UUID, state: TrainState) -> None:
        """Write the state atomically; a reader sees the previous checkpoint or this one."""
        meta = {
            "eta": state.eta,
            "epoch": state.epoch,
            "rng": state.rng.bit_generator.state,
            "history": [row.model_dump(mode="json") for row in state.history],
            "watch": state.watch.to_dict() if state.watch else None,  # early stopping
        }
        arrays = {name: getattr(state.weights, name) for name in WEIGHT_NAMES}
        arrays |= {f"step_{name}": getattr(state.previous_step, name) for name in WEIGHT_NAMES}
        if state.best_weights is not None:
            arrays |= {f"best_{name}": getattr(state.best_weights, name) for name in WEIGHT_NAMES}
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
        write_bytes_atomic(self.checkpoint_path(job_id), buffer.getvalue())

    def load_checkpoint(self, job_id: UUID) -> TrainState | None:
        """The job's last checkpoint, or ``None`` if there is none or it is unreadable."""
        path = self.checkpoint_path(job_id)
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                weights = mlp.Weights(*(npz[name] for name in WEIGHT_NAMES))
                step = mlp.Weights(*(npz[f"step_{name}"] for name in WEIGHT_NAMES))
                best = (
                    mlp.Weights(*(npz[f"best_{name}"] for name in WEIGHT_NAMES))
                    if "best_w1" in npz.files
                    else None
                )
            watch = Watch(**meta["watch"]) if meta.get("watch") else None
            rng = np.random.default_rng()
            rng.bit_generator.state = meta["rng"]
            history = [EpochRecord.model_validate(row) for row in meta["history"]]
        except FileNotFoundError:
            return None
        except Exception as exc:  # a damaged checkpoint only costs the epochs since the start
            log.warning("ignoring unreadable checkpoint %s: %s", path.name, exc)
            return None
        return TrainState(
            weights, step, float(meta["eta"]), int(meta["epoch"]), rng, history, watch, best
        )

    def remove_checkpoint(self, job_id: UUID) -> None:
        self.checkpoint_path(job_id).unlink(missing_ok=True)

    def model_ids(self) -> list[UUID]:
        """Ids of complete models (file and checksum both present)."""
        ids = []
        for checksum in sorted(self.root.glob("*.sha256")):
            try:
                model_id = UUID(checksum.stem)
            except ValueError:
                continue
            if self.path(model_id).exists():
                ids.append(model_id)
        return ids

    def remove_stale_temp_files(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Delete temp files left by writers that crashed before their rename.

        Only old ones: a younger temp file may belong to a write in progress in
        another process (the api, another worker) sharing ``MODEL_DIR``.
        """
        removed = 0
        cutoff = time.time() - older_than
        for tmp in self.root.rglob(f".*{TMP_SUFFIX}"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("removed %d stale temp files from %s", removed, self.root)
        return removed
