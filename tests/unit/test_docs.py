"""The README's settings table is the Settings class, field for field."""

import re

from shared.config import Settings
from tests.procs import REPO


def test_readme_lists_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    listed = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, re.M))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields <= listed, f"settings missing from README: {sorted(fields - listed)}"
