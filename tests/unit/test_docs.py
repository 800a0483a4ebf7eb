"""The README's settings table is the Settings class, field for field."""

import re

from shared.config import Settings
from tests.procs import REPO


def test_readme_lists_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    listed = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, re.M))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields <= listed, f"settings missing from README: {sorted(fields - listed)}"


def test_empty_variables_mean_unset(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``API_KEY=`` in a .env must not demand an empty key from every client."""
    monkeypatch.setenv("API_KEY", "")
    monkeypatch.setenv("BLAS_THREADS", "")
    settings = Settings()
    assert settings.api_key is None and settings.blas_threads is None
