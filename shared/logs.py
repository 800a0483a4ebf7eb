"""One log set-up for api and worker: JSON lines (or plain text), with the job id on
every line logged while a job runs."""

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(job_id)s%(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"

_job_id: ContextVar[str | None] = ContextVar("job_id", default=None)


@contextmanager
def job_context(job_id: object) -> Iterator[None]:
    """Tag every record logged inside (by this thread or task) with ``job_id``."""
    token = _job_id.set(str(job_id))
    try:
        yield
    finally:
        _job_id.reset(token)


class _JobIdFilter(logging.Filter):
    def __init__(self, json: bool) -> None:
        super().__init__()
        self.json = json

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = _job_id.get()
        if self.json:
            if job_id is not None:
                record.job_id = job_id
        else:
            record.job_id = f"job={job_id} " if job_id else ""
        return True


def configure_logging(level: str, fmt: str = "json") -> None:
    """Idempotent: api, worker and every pool process call it at start."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_mnist", False)]:
        root.removeHandler(handler)
    # sys.__stderr__, not sys.stderr: Celery's pool processes replace sys.stderr with a
    # proxy that logs, and a handler writing to it would swallow every line.
    handler = logging.StreamHandler(sys.__stderr__)
    as_json = fmt == "json"
    handler.setFormatter(
        JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "asctime": "time"})
        if as_json
        else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(_JobIdFilter(as_json))
    handler._mnist = True  # type: ignore[union-attr]
    root.addHandler(handler)
    root.setLevel(level.upper())
