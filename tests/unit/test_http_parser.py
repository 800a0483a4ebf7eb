"""The header cap holds for the plain ``uvicorn api.main:app`` command (issue 10).

uvicorn's ``--http auto`` picks httptools when it can be imported, and httptools has
no limit on an unfinished request line + headers: 8 connections each sending a 64 MB
header took the API from 149 to 652 MB. h11, which it picks otherwise, refuses more
than 16 KiB. So the project depends on plain ``uvicorn`` (not ``uvicorn[standard]``),
and these tests fail if httptools comes back into the environment (a dependency, a
manual install) or the limit changes. tests/e2e/test_memory.py provokes it for real.
"""

import importlib.util
import tomllib

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.h11_impl import H11Protocol

from tests.procs import REPO


def test_httptools_is_not_installed() -> None:
    assert importlib.util.find_spec("httptools") is None, (
        "httptools is installed: `uvicorn api.main:app` would use it and accept headers "
        "of any size; uninstall it (and depend on plain uvicorn, not uvicorn[standard])"
    )


def test_uvicorn_auto_picks_h11_with_its_16_kib_limit() -> None:
    assert AutoHTTPProtocol is H11Protocol
    config = Config("api.main:app")  # what `uvicorn api.main:app` builds, not loaded
    assert config.http == "auto"
    assert config.h11_max_incomplete_event_size is None  # so h11's default applies
    assert h11._connection.DEFAULT_MAX_INCOMPLETE_EVENT_SIZE == 16 * 1024


def test_the_dependency_is_plain_uvicorn() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        deps += extra
    assert not [d for d in deps if "httptools" in d or "uvicorn[" in d.replace(" ", "")]
