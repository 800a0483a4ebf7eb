"""``mnist feedback FILE --label N``, ``mnist feedback list`` and ``mnist finetune``
through the installed entry point, against the real service."""

import re
from pathlib import Path

import numpy as np
import pytest

from shared.data.mnist import Mnist
from tests.digits import dark_on_light_png
from tests.e2e.conftest import Stack
from tests.e2e.test_cli import mnist, one_line_error

pytestmark = pytest.mark.e2e

SAVED = re.compile(r"^correction ([0-9a-f-]{36}) (saved|already saved): a (\d)$")


def picture(tmp_path: Path, data: Mnist, index: int) -> Path:
    path = tmp_path / f"digit-{index}.png"
    path.write_bytes(dark_on_light_png(data.test_images[index], 5, (200, 180), (30, 20)))
    return path


def test_send_list_and_fine_tune_on_corrections(
    stack: Stack, tiny_model: str, mnist_data: Mnist, tmp_path: Path
) -> None:
    labels = np.asarray(mnist_data.test_labels)
    three = int(np.flatnonzero(labels == 3)[0])
    file = picture(tmp_path, mnist_data, three)

    sent = mnist(stack, "feedback", str(file), "--label", "3")
    assert sent.returncode == 0, sent.stderr
    match = SAVED.match(sent.stdout.strip())
    assert match and match[2] == "saved" and match[3] == "3", sent.stdout
    correction = stack.http.get(f"/feedback/{match[1]}").json()
    assert (correction["label"], correction["source"]) == (3, "image")
    assert np.asarray(correction["pixels"]).shape == (28, 28)
    again = mnist(stack, "feedback", str(file), "--label", "3")
    assert again.returncode == 0
    assert again.stdout.strip() == f"correction {match[1]} already saved: a 3"

    # with what the model answered and which model it was
    four = int(np.flatnonzero(labels == 4)[0])
    other = mnist(
        stack, "feedback", str(picture(tmp_path, mnist_data, four)), "--label", "4",
        "--predicted", "9", "--model", tiny_model,
    )  # fmt: skip
    assert other.returncode == 0 and SAVED.match(other.stdout.strip()), other.stdout

    listed = mnist(stack, "feedback", "list")
    assert listed.returncode == 0, listed.stderr
    assert "corrections 1-2 of 2" in listed.stdout
    assert match[1] in listed.stdout and tiny_model[:8] in listed.stdout
    assert re.search(r"per digit \(2 in all\).* 3: 1 .* 4: 1 ", listed.stdout), listed.stdout
    only_fours = mnist(stack, "feedback", "list", "--label", "4")
    assert "corrections of label 4 1-1 of 1" in only_fours.stdout and match[1] not in (
        only_fours.stdout
    )

    one_line_error(mnist(stack, "feedback", str(file)), "--label N is required")
    one_line_error(mnist(stack, "feedback", str(tmp_path / "nope.png"), "--label", "3"), "nope.png")
    one_line_error(
        mnist(stack, "feedback", str(file), "--label", "3", "--model", "not-an-id"), "model_id"
    )

    # a few more, so that the job holds some out to measure on
    for digit in (0, 1, 2, 5, 7):
        index = int(np.flatnonzero(labels == digit)[0])
        path = picture(tmp_path, mnist_data, index)
        assert mnist(stack, "feedback", str(path), "--label", str(digit)).returncode == 0

    queued = mnist(stack, "finetune", "--from", tiny_model, "--promote", "production", "--wait")
    assert queued.returncode == 0, queued.stderr
    found = re.search(r"job ([0-9a-f-]{36}) succeeded after 3 of 3 epochs", queued.stdout)
    assert found, queued.stdout
    assert re.search(r"(promoted|not promoted) to production: ", queued.stdout), queued.stdout
    assert re.search(
        r"held-out corrections: \d+\.\d% \(parent\) -> \d+\.\d%, trained on 6 corrections",
        queued.stdout,
    ), queued.stdout
    job = stack.job(found[1])
    assert (job["init_model"], job["init_model_id"]) == (tiny_model, tiny_model)
    assert (job["params"]["epochs"], job["params"]["eta"], job["feedback_weight"]) == (
        3,
        0.005,
        50,
    )
    assert job["promote"] == {
        "alias": "production",
        "metric": "feedback_accuracy",
        "min_gain": 0.01,
    }
    assert job["feedback"]["count"] == 7

    # without --wait: queued with the weight asked for, from the alias; not promoted
    stack.http.put("/aliases/production", json={"model_id": tiny_model})
    started = mnist(stack, "finetune", "--weight", "10", "--no-promote")
    assert started.returncode == 0, started.stderr
    line = re.match(r"job ([0-9a-f-]{36}) queued: fine-tuning production", started.stdout)
    assert line, started.stdout
    job = stack.job(line[1])
    assert (job["init_model"], job["init_model_id"], job["feedback_weight"], job["promote"]) == (
        "production",
        tiny_model,
        10,
        None,
    )
    assert mnist(stack, "cancel", line[1]).returncode == 0
