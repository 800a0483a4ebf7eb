"""What the job store answers besides records: the outcomes of creation and the refusals
a caller translates (the API into 404, 409 and 429; a sweep into a failed trial), and
the decoders of stored records and history rows, which never let one bad record take a
list down with it.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from shared.redisdb.store import Ended, decode_record, decode_records
from shared.schemas.jobs import EpochRecord, Job


class JobNotFound(LookupError):
    pass


class JobEnded(Ended):
    """The job already succeeded, failed or was cancelled."""


class TooLateToCancel(Exception):
    """Training is over and the model is being saved: the job will succeed."""


@dataclass(frozen=True)
class Created:
    """What creation did: created ``job_id``; or found the Idempotency-Key's first job
    (with that request's fingerprint); or found a job with this id already (``taken``)."""

    job_id: UUID
    created: bool
    fingerprint: str | None = None
    taken: bool = False


class IdClaimed(Exception):
    """A model (or an import in progress) holds the id this job would take."""


class ParentGone(Exception):
    """The model the job starts from is no longer registered (deleted meanwhile)."""

    def __init__(self, parent: UUID) -> None:
        super().__init__(f"no model {parent}: it was deleted")
        self.parent = parent


class QueueFull(Exception):
    def __init__(self, queued: int) -> None:
        super().__init__(f"{queued} jobs are queued already; try later")
        self.queued = queued


def decode(raw: str | bytes | None) -> Job | None:
    """A stored record, or ``None`` (logged) if it does not validate."""
    return decode_record(Job, raw, "a job record")


def decode_rows(rows: Iterable[str | bytes]) -> list[EpochRecord]:
    """History rows, skipping (and logging) any that do not validate."""
    return decode_records(EpochRecord, rows, "a history row")
