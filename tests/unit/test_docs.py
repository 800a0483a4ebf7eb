"""The docs say what the code does: settings, Redis keys and modules are listed where the
docs promise, the README stays short, and every relative link resolves."""

import re
from pathlib import Path

import pytest

from shared.config import Settings
from shared.redisdb.keys import LAYOUT
from tests.procs import REPO

DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", REPO / "BENCHMARKS.md", *DOCS]
PACKAGES = ("api", "worker", "shared", "cli")


def _text(page: str) -> str:
    return (REPO / page).read_text()


def test_every_setting_is_in_the_settings_table() -> None:
    listed = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", _text("docs/operations.md"), re.M))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields <= listed, f"settings missing from docs/operations.md: {sorted(fields - listed)}"
    assert listed <= fields | {"REDIS_DIR", "HOST", "PORT"}, sorted(listed - fields)


def _table(page: str, header: str) -> str:
    """The rows of the table under ``header`` (up to the first line that is not a row)."""
    text = _text(page)
    rows = text[text.index(header) :].split("\n\n")[0]
    return rows


def test_the_redis_key_table_is_the_key_module() -> None:
    table = _table("docs/operations.md", "| key | what it holds |")
    listed = re.findall(r"^\| `([^`]+)` \| ", table, re.M)
    keys = [key for key in listed if key.islower() or "<" in key or key.endswith(":")]
    assert set(keys) >= set(LAYOUT), sorted(set(LAYOUT) - set(keys))
    stale = {key for key in keys if key not in LAYOUT and not key.startswith(("mnist_",))}
    assert not stale, f"keys documented but not in shared/redisdb/keys.py: {sorted(stale)}"


def test_every_module_is_in_the_layout_table() -> None:
    listed = set(re.findall(r"^\| `([a-z0-9_/]+\.py)` \|", _text("docs/development.md"), re.M))
    modules = {
        str(path.relative_to(REPO))
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
        if path.name != "__init__.py"
    }
    assert modules <= listed, f"missing from docs/development.md: {sorted(modules - listed)}"
    assert listed <= modules, f"no such module: {sorted(listed - modules)}"


def test_the_readme_reads_in_minutes() -> None:
    assert len(_text("README.md").splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    text = page.read_text()
    anchors_here = _anchors(text)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: broken link {target}"
        if anchor and linked.suffix == ".md":
            anchors = anchors_here if not path else _anchors(linked.read_text())
            assert anchor in anchors, f"{page.name}: no heading for #{anchor} in {linked.name}"


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors: headings lower-cased, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """``API_KEY=`` in a .env must not demand an empty key from every client."""
    monkeypatch.setenv("API_KEY", "")
    monkeypatch.setenv("BLAS_THREADS", "")
    settings = Settings()
    assert settings.api_key is None and settings.blas_threads is None
