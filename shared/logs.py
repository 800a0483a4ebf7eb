"""One log format for api and worker."""

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_mnist", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._mnist = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
