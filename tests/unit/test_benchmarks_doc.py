"""BENCHMARKS.md stays a short standing, its links resolve, and the runs it cites live in
uniquely headed files under bench/results/ (issue 14)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.procs import REPO

DOC = REPO / "BENCHMARKS.md"
RESULTS = REPO / "bench" / "results"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
COMMAND = re.compile(r"`[^`]*python -m bench\.\w+[^`]*`")


def _standing_rows() -> list[str]:
    """The data rows of the first table under ``## Standing``."""
    lines = DOC.read_text().splitlines()
    start = lines.index("## Standing")
    rows: list[str] = []
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            in_table = True
            rows.append(line)
        elif in_table:
            break
    assert len(rows) > 2, "no table under ## Standing"
    assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", rows[1]), "second row is not a separator"
    return rows[2:]


def _first_heading(path: Path) -> str | None:
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line
    return None


def test_benchmarks_md_is_at_most_300_lines() -> None:
    n = len(DOC.read_text().splitlines())
    assert n <= 300, f"BENCHMARKS.md has {n} lines; move detail to bench/results/"


def test_every_relative_link_resolves() -> None:
    targets = LINK.findall(DOC.read_text())
    relative = [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]
    assert relative, "BENCHMARKS.md links nothing relative (bench/results/ at least)"
    missing = [t for t in relative if not (DOC.parent / t.split("#", 1)[0]).exists()]
    assert not missing, f"links to missing files: {missing}"


def test_links_the_results_folder() -> None:
    targets = {t.rstrip("/") for t in LINK.findall(DOC.read_text())}
    assert "bench/results" in targets


def test_results_files_have_unique_first_headings() -> None:
    files = sorted(RESULTS.glob("*.md"))
    assert files, "bench/results/ holds no runs"
    headings = {f.name: _first_heading(f) for f in files}
    assert all(headings.values()), [n for n, h in headings.items() if not h]
    repeated = [h for h, n in Counter(headings.values()).items() if n > 1]
    assert not repeated, f"results files share a heading: {repeated}"


def test_every_target_row_names_a_command_and_its_run() -> None:
    rows = _standing_rows()
    no_command = [r for r in rows if not COMMAND.search(r)]
    assert not no_command, f"rows without a `python -m bench.` command: {no_command}"
    no_run = [r for r in rows if "](bench/results/" not in r]
    assert not no_run, f"rows without a link to their run in bench/results/: {no_run}"


def test_record_writes_a_new_uniquely_named_file_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import common

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(common, "blas", lambda: "test BLAS")  # no threadpoolctl probing
    before = DOC.read_text()
    paths = [common.record("A title", "| a | b |\n|---|---|\n| 1 | 2 |") for _ in range(3)]
    assert len(set(paths)) == 3 and all(p.parent == tmp_path / "results" for p in paths)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d-\d{6}-[a-z0-9-]+\.md", p.name) for p in paths)
    headings = [_first_heading(p) for p in paths]
    assert len(set(headings)) == 3 and all(h and h.startswith("# A title (") for h in headings)
    assert all("- command: `" in p.read_text() and "| 1 | 2 |" in p.read_text() for p in paths)
    assert DOC.read_text() == before, "record() must not touch BENCHMARKS.md"
