"""``mnist sweep | sweeps | sweep-status | sweep-cancel`` through the installed entry point,
against the real service with two workers (tiny trials)."""

import re

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_cli import mnist, mnist_tty, one_line_error
from tests.e2e.test_sweeps import two, wait_sweep
from tests.procs import wait_until

pytestmark = pytest.mark.e2e

__all__ = ["two"]  # the module's stack: the API, two workers, a private Redis

TINY = ["--epochs", "3", "--train-size", "2000", "--minibatches", "20", "--input-scaling", "unit"]


@pytest.mark.parametrize(
    ("space", "fragment"),
    [
        ("eta", "--space 'eta': expected FIELD=LOW:HIGH"),
        ("eta=a:b:log", "--space 'eta=a:b:log': expected"),
        ("eta=0.1:0.2:ln", "--space 'eta=0.1:0.2:ln': expected"),
        ("=1:2", "expected FIELD=LOW:HIGH"),
        ("lr_schedule=compound,,inverse", "expected FIELD=LOW:HIGH"),
    ],
)
def test_bad_space_is_one_line_and_exit_1(two: Stack, space: str, fragment: str) -> None:
    before = two.http.get("/sweeps").json()["total"]
    one_line_error(mnist(two, "sweep", "--space", space, "--trials", "2"), fragment)
    assert two.http.get("/sweeps").json()["total"] == before  # nothing was sent


def test_the_server_refusal_is_one_line(two: Stack) -> None:
    refused = mnist(two, "sweep", "--space", "no_such_field=1:2")
    one_line_error(refused, "422", "no_such_field")


def test_sweep_wait_shows_a_live_table_then_the_best_promoted(two: Stack) -> None:
    code, screen = mnist_tty(
        two.url,
        "sweep",
        "--space", "eta=0.01:0.5:log",
        "--space", "n_hidden=10:60",
        "--space", "lr_schedule=compound,inverse",
        "--trials", "3",
        "--parallel", "2",
        *TINY,
        "--sampler", "random",
        "--seed", "7",
        "--promote", "cli-sweep",
        "--wait",
    )  # fmt: skip
    assert code == 0, screen
    found = re.search(r"sweep ([0-9a-f-]{36}) succeeded in [\d.]+ s: best trial (\d)", screen)
    assert found, screen
    sweep_id, best_number = found.group(1), int(found.group(2))
    record = two.http.get(f"/sweeps/{sweep_id}").json()
    # the live table was drawn while trials ran, then once more at the end
    assert re.search(rf"sweep {sweep_id} (queued|running): \d of 3 trials", screen), screen
    assert f"sweep {sweep_id} succeeded: 3 of 3 trials" in screen
    for column in ("val acc", "eta", "n_hidden", "lr_schedule"):
        assert column in screen
    best = record["best"]
    assert best["number"] == best_number and record["request"]["space"]["lr_schedule"] == {
        "choices": ["compound", "inverse"]
    }
    assert f"validation accuracy {100 * best['value']:.2f}%" in screen
    assert f"model {best['model_id']}" in screen
    assert "promoted to cli-sweep" in screen
    assert two.http.get("/aliases/cli-sweep").json()["model_id"] == best["model_id"]
    assert record["base"]["epochs"] == 3 and record["base"]["train_size"] == 2000
    assert record["seed"] == 7 and record["request"]["sampler"] == "random"

    listed = mnist(two, "sweeps")
    assert listed.returncode == 0 and sweep_id in listed.stdout and "3/3" in listed.stdout
    status = mnist(two, "sweep-status", sweep_id)
    assert status.returncode == 0, status.stderr
    rows = [line for line in status.stdout.splitlines() if re.match(r"^│ [0-2] ", line)]
    assert len(rows) == 3, status.stdout  # one row per trial
    for trial in record["trials"]:
        assert (trial["model_id"] or "-") in status.stdout
    assert f"best trial {best_number} validation accuracy" in status.stdout


def test_sweep_without_wait_then_cancel(two: Stack) -> None:
    started = mnist(
        two, "sweep", "--space", "eta=0.001:0.1", "--trials", "4", *TINY, "--epochs", "3000"
    )
    assert started.returncode == 0, started.stderr
    found = re.search(r"sweep ([0-9a-f-]{36}) (queued|running)$", started.stdout, re.M)
    assert found and "mnist sweep-status" in started.stdout, started.stdout
    sweep_id = found.group(1)
    wait_until(
        lambda: any(
            t["epochs_run"] >= 1 for t in two.http.get(f"/sweeps/{sweep_id}").json()["trials"]
        ),
        60,
        "a trial to train",
    )
    cancelled = mnist(two, "sweep-cancel", sweep_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"sweep {sweep_id}" in cancelled.stdout and "no new trial starts" in cancelled.stdout
    record = wait_sweep(two, sweep_id, timeout=60)
    assert record["status"] == "cancelled"
    again = mnist(two, "sweep-cancel", sweep_id)
    one_line_error(again, "409")
    missing = mnist(two, "sweep-status", "00000000-0000-0000-0000-000000000000")
    one_line_error(missing, "404")
