"""Checkpoints in the artifact store, one object per holder of the job.

A holder writes ``checkpoints/<job id>/<fencing token>-<epoch>-<sha256[:12]>.npz``, a
new object for every checkpoint (no other holder can overwrite it, and a holder killed
between the write and the pointer leaves the previous checkpoint intact), then points
the job's ``job:<id>:checkpoint`` record at it with its sha256 and epoch, in a Redis
transaction that checks the token (so a stale holder's checkpoint is never read as the
newest: it deletes its object again when its pointer is refused), and then deletes the
object the pointer named before. Loading reads what the pointer names, verifies the sha256,
then decodes; a checkpoint that is missing, altered or unreadable costs only the
epochs since an earlier start. Jobs written before this layout kept their checkpoint
at ``checkpoints/<job id>.npz``; it is still read when a job has no pointer.
"""

import logging
from uuid import UUID

import redis
from pydantic import BaseModel

from shared.artifacts.base import ArtifactNotFound, ArtifactStore
from shared.files import sha256_bytes
from shared.jobs.leases import Fence, Superseded
from shared.ml import checkpoint
from shared.ml.training import TrainState
from shared.redisdb.client import transact
from shared.redisdb.keys import Keys

log = logging.getLogger(__name__)

PREFIX = "checkpoints/"
MAX_CHECKPOINT_BYTES = 256 * 1024 * 1024
"""Largest checkpoint read (1,024 hidden units in float64, three copies: about 40 MB)."""


class Pointer(BaseModel):
    key: str
    sha256: str
    epoch: int


def _key(job_id: UUID, token: int, epoch: int, sha256: str) -> str:
    return f"{PREFIX}{UUID(str(job_id))}/{token}-{epoch}-{sha256[:12]}.npz"


def _legacy_key(job_id: UUID) -> str:
    return f"{PREFIX}{UUID(str(job_id))}.npz"


class Checkpoints:
    def __init__(self, store: ArtifactStore, client: redis.Redis, keys: Keys) -> None:
        self.store, self.redis, self.keys = store, client, keys

    def save(self, job_id: UUID, state: TrainState, fence: Fence) -> None:
        """Write the state under the holder's key, then point the job at it (fenced);
        :class:`Superseded` if the job changed hands (nothing is left behind)."""
        payload = checkpoint.dumps(state)
        digest = sha256_bytes(payload)
        key = _key(job_id, fence.token, state.epoch, digest)
        pointer = Pointer(key=key, sha256=digest, epoch=state.epoch)
        record = self.keys.job_checkpoint(job_id)
        replaced: list[str] = []

        def point(pipe: redis.client.Pipeline) -> None:
            fence.check(pipe)
            before = pipe.get(record)
            replaced[:] = [Pointer.model_validate_json(before).key] if before else []
            pipe.multi()
            pipe.set(record, pointer.model_dump_json())

        fence.verify(self.redis)  # cheap, not atomic: no object written by a stale holder
        self.store.put(key, payload)
        try:
            transact(self.redis, point, record)
        except Superseded:
            self.store.delete(key)
            raise
        for old in replaced:
            if old != key:
                self.store.delete(old)  # nothing points at it any more

    def load(self, job_id: UUID) -> TrainState | None:
        """The newest checkpoint the job's holders recorded, verified; ``None`` if none
        is usable (the job starts over, or from an earlier checkpoint's epoch)."""
        raw = self.redis.get(self.keys.job_checkpoint(job_id))
        if raw is None:
            return self._load_legacy(job_id)
        pointer = Pointer.model_validate_json(raw)
        try:
            payload = self.store.get(pointer.key, max_bytes=MAX_CHECKPOINT_BYTES)
        except ArtifactNotFound:
            log.warning("job %s: its checkpoint is gone; starting over", job_id)
            return None
        if sha256_bytes(payload) != pointer.sha256:
            log.warning("job %s: its checkpoint fails its sha256; starting over", job_id)
            return None
        return self._decode(job_id, payload)

    def _load_legacy(self, job_id: UUID) -> TrainState | None:
        try:
            payload = self.store.get(_legacy_key(job_id), max_bytes=MAX_CHECKPOINT_BYTES)
        except ArtifactNotFound:
            return None
        return self._decode(job_id, payload)

    def _decode(self, job_id: UUID, payload: bytes) -> TrainState | None:
        try:
            return checkpoint.loads(payload)
        except checkpoint.CheckpointError as exc:
            log.warning("job %s: ignoring an unreadable checkpoint: %s", job_id, exc)
            return None

    def remove(self, job_id: UUID) -> None:
        """Every checkpoint object of the job, and its pointer (the job has ended)."""
        for key in self.store.list(f"{PREFIX}{UUID(str(job_id))}/"):
            self.store.delete(key)
        self.store.delete(_legacy_key(job_id))
        self.redis.delete(self.keys.job_checkpoint(job_id))

    def job_ids(self) -> set[UUID]:
        """Jobs that have checkpoint objects (for the sweep of leftovers)."""
        found = set()
        for key in self.store.list(PREFIX):
            name = key[len(PREFIX) :].split("/")[0].removesuffix(".npz")
            try:
                found.add(UUID(name))
            except ValueError:
                continue
        return found
