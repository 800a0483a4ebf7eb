"""The shell examples of docs/api.md, lifecycle.md, sweeps.md and feedback.md, run as a
reader runs them: ``./scripts/dev``, the README's quick start (which leaves ``$JOB``,
promoted to ``production``, and ``digit.json``), then each page's blocks marked
``<!-- example -->``, in order, in one bash process per page, verbatim but for the port.
"""

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_readme import in_bash, readme_block, scripts_dev
from tests.procs import REPO

pytestmark = pytest.mark.e2e

PAGES = ("api", "lifecycle", "sweeps", "feedback")
MARK = "<!-- example -->"
SERVER_ERRORS = re.compile(r"internal server error|unavailable|unreachable|integrity", re.I)


def example_blocks(page: str) -> list[str]:
    """The page's ```bash blocks preceded by the example mark, in order."""
    return re.findall(
        rf"^{MARK}\n```bash\n(.*?)^```", (REPO / "docs" / page).read_text(), re.M | re.S
    )


@dataclass
class Reader:
    """The shell of someone who has run ./scripts/dev and the README's quick start."""

    port: int
    cwd: Path
    job: str
    dev_log: Path

    def run(self, page: str) -> tuple[str, list[Any]]:
        blocks = example_blocks(f"{page}.md")
        assert blocks, f"docs/{page}.md has no {MARK} blocks"
        script = "\n".join(blocks).replace("localhost:8000", f"127.0.0.1:{self.port}")
        done = subprocess.run(
            # $JOB as the quick start set it in the reader's shell
            ["bash", "-c", f"set -euo pipefail\nJOB={self.job}\n{script}"],
            cwd=self.cwd,
            # the command line's default is http://127.0.0.1:8000, the port replaced here
            env={**os.environ, "MNIST_URL": f"http://127.0.0.1:{self.port}"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        (self.cwd / f"{page}.out").write_text(done.stdout + "\n--- stderr\n" + done.stderr)
        assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        answers = [
            json.loads(line)  # a JSON-looking line that does not parse fails here
            for line in done.stdout.splitlines()
            if line.startswith(("{", "["))
        ]
        for answer in answers:
            detail = answer.get("detail") if isinstance(answer, dict) else None
            assert not (isinstance(detail, str) and SERVER_ERRORS.search(detail)), answer
        return done.stdout, answers


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reader]:
    root = tmp_path_factory.mktemp("docs-examples")
    with scripts_dev(root) as port:
        quickstart = readme_block("quickstart").replace("localhost:8000", f"127.0.0.1:{port}")
        in_bash(quickstart, root, 120)
        job = json.loads((root / "job.json").read_text())["id"]
        yield Reader(port, root, job, root / "dev.log")
    # no request of any example got a 5xx (uvicorn's access log)
    failed = re.findall(r'.*HTTP/1\.1" 5\d\d.*', (root / "dev.log").read_text())
    assert not failed, failed


def test_every_shell_block_is_marked_or_says_why_not() -> None:
    for page in PAGES:
        text = (REPO / "docs" / f"{page}.md").read_text()
        fences = len(re.findall(r"^```bash$", text, re.M))
        marked = len(example_blocks(f"{page}.md"))
        unmarked = fences - marked
        assert marked >= 1, page
        # the one block left unmarked (lifecycle's second instance) says it is not run
        assert unmarked == (1 if page == "lifecycle" else 0), (page, fences, marked)
        if unmarked:
            assert "not run by the tests" in " ".join(text.split()), page


def test_api_examples(reader: Reader) -> None:
    out, answers = reader.run("api")
    live, ready, accepted, jobs, cancel, cancelled, ended = answers[:7]
    assert live["status"] == "ok"
    assert ready["status"] == "ok" and ready["serving"]["model_id"] == reader.job
    assert ready["serving"]["alias"] == "production"
    assert accepted["status"] == "queued"
    assert accepted["id"] in [j["id"] for j in jobs["items"]]
    # the cancel example's answer is the 202 record, not a 409
    assert "detail" not in cancel and cancel["id"] == accepted["id"], cancel
    assert cancelled["id"] == accepted["id"] and cancelled["status"] == "cancelled"
    assert "ended" in ended["detail"] or "already" in ended["detail"], ended
    one, batch, png, jpg = answers[7:11]
    assert one["label"] == 7 and one["alias"] == "production" and one["model_id"] == reader.job
    assert len(batch["labels"]) == 2 and batch["model_id"] == reader.job
    assert png["label"] == 7 and len(png["pixels"]) == 28 and png["model_id"] == reader.job
    assert jpg["label"] == 7 and jpg["model_id"] == reader.job and jpg["alias"] is None
    assert len(answers) == 11, answers[11:]
    # the event stream of the quick start's job: 20 epochs, then end
    assert len(re.findall(r"^event: epoch", out, re.M)) == 20, out
    assert re.search(r"^event: end", out, re.M), out


def test_lifecycle_examples(reader: Reader) -> None:
    out, answers = reader.run("lifecycle")
    new, challenger, moved, rolled_back, aliases, gated, promotion = answers[:7]
    assert challenger["name"] == "challenger" and challenger["model_id"] == new["id"]
    assert moved["name"] == "production" and moved["model_id"] == new["id"]
    # the rollback example returns the earlier model
    assert rolled_back["model_id"] == reader.job, rolled_back
    assert rolled_back["history"][0]["source"] == "rollback"
    assert {a["name"]: a["model_id"] for a in aliases["items"]} == {
        "production": reader.job,
        "challenger": new["id"],
    }
    assert gated["status"] == "queued"
    assert promotion["alias"] == "production" and promotion["promoted"] is False, promotion
    assert promotion["incumbent_model_id"] == reader.job
    refused, unknown, imported, exists = answers[7:11]
    assert "challenger" in refused["detail"], refused
    assert re.findall(r"^\d{3}$", out, re.M) == ["204", "204"], out
    assert "not found" in unknown["detail"] or new["id"] in unknown["detail"], unknown
    assert imported["id"] == new["id"] and imported["imported_from"] == "backup", imported
    assert "exists" in exists["detail"], exists
    assert (reader.cwd / "model.onnx").stat().st_size > 0
    # canary and shadow: start, watch, promote (and back)
    shadow, alice, watched, promoted, back = answers[11:16]
    assert (shadow["mode"], shadow["model_id"]) == ("shadow", new["id"]), shadow
    assert shadow["primary_model_id"] == reader.job
    side = {"canary": new["id"], "primary": reader.job}
    assert alice["alias"] == "production" and alice["model_id"] == side[alice["variant"]], alice
    assert (watched["id"], watched["mode"], watched["percent"]) == (shadow["id"], "canary", 10)
    requests = watched["stats"]["primary"]["requests"] + watched["stats"]["canary"]["requests"]
    assert requests == 21 and 0 <= watched["stats"]["shadow"]["compared"] <= 20, watched
    assert re.search(r"^alias production: canary 10%, candidate", out, re.M), out
    assert promoted["model_id"] == new["id"] and promoted["history"][0]["source"] == "canary"
    assert back["model_id"] == reader.job and back["history"][0]["source"] == "rollback"
    drift = answers[16]  # the inputs production's model answered in the examples so far
    assert drift["model_id"] == reader.job and drift["reference_source"] == "training"
    assert drift["window"] >= 1 and drift["drifted"] is False, drift
    assert len(answers) == 17, answers[17:]


def test_sweeps_examples(reader: Reader) -> None:
    out, answers = reader.run("sweeps")
    accepted, sweep, long_sweep, cancelled, ended = answers[:5]
    assert sweep["id"] == accepted["id"] and sweep["status"] == "succeeded", sweep
    assert len(sweep["trials"]) == 4 and sweep["best"] is not None
    assert sweep["promotion"]["alias"] == "production"
    assert re.search(r"^event: end", out, re.M), out
    # the cancel example's answer is the sweep record (202), then a 409 for the ended one
    assert cancelled["id"] == long_sweep["id"] and "detail" not in cancelled, cancelled
    assert "already succeeded" in ended["detail"], ended
    # the command line's sweep ended, and its live table and summary printed
    assert re.search(r"^sweep \S+ succeeded in [\d.]+ s: best trial", out, re.M), out
    early_accepted, early = answers[5:7]
    assert early_accepted["status"] == "queued"
    assert early["status"] == "succeeded" and early["stopped_at_epoch"] is not None, early
    assert early["stopped_at_epoch"] < 100 and early["best_epoch"] <= early["stopped_at_epoch"]
    assert len(answers) == 7, answers[7:]


def test_feedback_examples(reader: Reader) -> None:
    out, answers = reader.run("feedback")
    first, again, picture, listed, stats, one, finetune = answers[:7]
    assert first["label"] == 7 and first["predicted"] == 1 and first["model_id"] == reader.job
    assert again["id"] == first["id"]  # the same image and label: no duplicate
    assert picture["label"] == 7 and picture["id"] != first["id"]
    assert {item["id"] for item in listed["items"]} >= {first["id"], picture["id"]}
    assert stats["total"] == 2 and stats["by_label"]["7"] == 2, stats
    assert one["id"] == first["id"] and len(one["pixels"]) in (28, 784)
    assert re.findall(r"^\d{3}$", out, re.M) == ["204"], out  # the moderation delete
    assert (reader.cwd / "fix.png").read_bytes().startswith(b"\x89PNG")
    assert finetune["status"] == "queued"
    recipe = httpx.get(f"http://127.0.0.1:{reader.port}/jobs/{finetune['id']}").json()
    assert recipe["init_model"] == "production" and recipe["feedback_weight"] == 50
    # the command line: a correction (the picture again: already saved), the list, a fine-tune
    assert len(re.findall(rf"^correction {picture['id']} already saved: a 7$", out, re.M)) == 2
    assert re.search(r"^per digit \(1 in all\)", out, re.M), out  # one left after the delete
    assert re.search(r"^job \S+ queued: fine-tuning production", out, re.M), out
    assert len(answers) == 7, answers[7:]
