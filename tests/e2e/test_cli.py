"""The ``mnist`` command, through its installed entry point, against the real service."""

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from shared.data.mnist import Mnist
from tests.digits import dark_on_light_png
from tests.e2e.conftest import Stack
from tests.procs import BIN, REPO, free_port, mnist_dir, start_api, stop, wait_until

pytestmark = pytest.mark.e2e

MNIST = BIN / "mnist"
TINY = ["--epochs", "3", "--train-size", "2000", "--minibatches", "20", "--eta", "0.01"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def cli_env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_")}
    env.update({"MNIST_URL": url, "MNIST_DIR": str(mnist_dir()), **extra})
    return env


def mnist(stack_or_url: Stack | str, *args: str, **env: str) -> subprocess.CompletedProcess:
    url = stack_or_url if isinstance(stack_or_url, str) else stack_or_url.url
    return subprocess.run(
        [str(MNIST), *args],
        env=cli_env(url, **env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def mnist_tty(url: str, *args: str, timeout: float = 120) -> tuple[int, str]:
    """Run in a pseudo-terminal, as a person would: rich draws its live progress bar."""
    controller, terminal = pty.openpty()
    env = cli_env(url, TERM="xterm-256color", COLUMNS="140", LINES="40")
    proc = subprocess.Popen(
        [str(MNIST), *args], stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=REPO
    )
    os.close(terminal)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    data = os.read(controller, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    return code, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_train_wait_shows_a_live_progress_bar_to_the_end(stack: Stack) -> None:
    code, screen = mnist_tty(stack.url, "train", *TINY, "--input-scaling", "unit", "--wait")
    assert code == 0, screen
    assert "epoch 3/3" in screen and "ETA" in screen
    assert re.search(r"cost \d+\.\d{4}", screen), screen
    assert "━" in screen  # the bar itself
    found = re.search(r"job ([0-9a-f-]{36}) succeeded after 3 of 3 epochs: train accuracy", screen)
    assert found, screen
    job = stack.job(found.group(1))
    assert job["status"] == "succeeded" and job["params"]["input_scaling"] == "unit"
    assert f"test accuracy {100 * job['test_accuracy']:.2f}%" in screen


def test_train_from_a_preset(stack: Stack) -> None:
    """``--preset`` is ``POST /jobs?preset=``: the preset's values, options on top."""
    presets = stack.http.get("/presets.json").json()
    jobs_before = stack.http.get("/jobs").json()["total"]
    fast = mnist(stack, "train", "--preset", "fast", "--epochs", "2", "--train-size", "6000")
    assert fast.returncode == 0, fast.stderr
    found = re.search(r"job ([0-9a-f-]{36}) queued", fast.stdout)
    assert found, fast.stdout
    job = stack.wait(found.group(1))
    assert job["status"] == "succeeded", job
    assert job["params"] == {**presets["fast"], "epochs": 2, "train_size": 6000}

    book = mnist(stack, "train", "--preset", "book", *TINY, "--json")
    assert book.returncode == 0, book.stderr
    job = stack.wait(json.loads(book.stdout)["id"])
    tiny = {"epochs": 3, "train_size": 2000, "minibatches": 20, "eta": 0.01}
    assert job["params"] == {**presets["book"], **tiny}

    unknown = mnist(stack, "train", "--preset", "quick", COLUMNS="200")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "'quick' is not one of 'book', 'fast'" in ANSI.sub("", unknown.stderr), unknown.stderr
    assert stack.http.get("/jobs").json()["total"] == jobs_before + 2  # no job for it


def test_jobs_status_models_and_predict(stack: Stack, mnist_data: Mnist, tmp_path: Path) -> None:
    result = mnist(stack, "train", *TINY, "--input-scaling", "unit", "--json")
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["id"]
    assert stack.wait(job_id)["status"] == "succeeded"

    listed = mnist(stack, "jobs")
    assert listed.returncode == 0 and job_id in listed.stdout and "succeeded" in listed.stdout
    status = mnist(stack, "status", job_id)
    assert status.returncode == 0
    assert "epoch 3 of 3" in status.stdout and "last epochs" in status.stdout
    detail = json.loads(mnist(stack, "status", job_id, "--json").stdout)
    assert detail["id"] == job_id and len(detail["history"]) == 3
    models = mnist(stack, "models")
    assert models.returncode == 0 and job_id in models.stdout

    by_index = mnist(stack, "predict", "--index", "0", "--json")
    assert by_index.returncode == 0, by_index.stderr
    assert json.loads(by_index.stdout)["model_id"] == job_id
    shown = mnist(stack, "predict", "--index", "0")
    assert shown.returncode == 0 and "test image 0 is a 7" in shown.stdout
    assert shown.stdout.count("%") == 10  # ten probability bars

    png = tmp_path / "digit.png"
    png.write_bytes(dark_on_light_png(mnist_data.test_images[1], 5, (300, 220), (90, 40)))
    by_file = mnist(stack, "predict", str(png), "--json", "--model", job_id)
    assert by_file.returncode == 0, by_file.stderr
    answer = json.loads(by_file.stdout)
    assert len(answer["pixels"]) == 28 and answer["model_id"] == job_id
    expected = stack.http.post("/predict", json={"pixels": answer["pixels"]}).json()["label"]
    assert answer["label"] == expected


def test_cancel_and_a_failing_wait(stack: Stack) -> None:
    running = stack.submit(epochs=2000, train_size=10_000)
    stack.wait_epoch(running, 1)
    result = mnist(stack, "cancel", running)
    assert result.returncode == 0 and running in result.stdout
    assert stack.wait(running)["status"] == "cancelled"
    one_line_error(mnist(stack, "cancel", running), "409", "already cancelled")

    # --wait on a job that ends cancelled exits non-zero after the summary
    waiting = subprocess.Popen(
        [str(MNIST), "train", "--epochs", "2000", "--train-size", "10000", "--wait", "--json"],
        env=cli_env(stack.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    job_id = wait_until(
        lambda: next(
            (j["id"] for j in stack.http.get("/jobs").json()["items"] if j["status"] == "running"),
            None,
        ),
        60,
        "the job to run",
    )
    stack.wait_epoch(job_id, 1)
    assert stack.http.post(f"/jobs/{job_id}/cancel").status_code == 202
    stdout, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 1
    assert f"job {job_id} cancelled after" in stdout


def test_errors_are_one_line(stack: Stack, tmp_path: Path) -> None:
    one_line_error(mnist(stack, "status", str(uuid.uuid4())), "404", "not found")
    one_line_error(mnist(stack, "status", "not-a-uuid"), "422")
    one_line_error(mnist(stack, "train", "--epochs", "0"), "422", "epochs")
    one_line_error(mnist(stack, "train", "--n-hidden", "1000000000"), "422", "n_hidden")
    one_line_error(mnist(f"http://127.0.0.1:{free_port()}", "jobs"), "cannot reach the service")
    one_line_error(mnist(stack, "predict", str(tmp_path / "missing.png")), "cannot read")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a picture")
    one_line_error(mnist(stack, "predict", str(garbage)), "415", "not an image")
    one_line_error(mnist(stack, "predict", "--index", "10000"), "--index must be 0..9999")
    no_mnist = mnist(stack, "predict", "--index", "3", MNIST_DIR=str(tmp_path))
    one_line_error(no_mnist, "MNIST test set", "not found")


def test_api_key_from_option_or_environment(stack: Stack) -> None:
    """Against an API that requires a key: 401 is one line; the key makes it work."""
    port = free_port()
    env = {**stack.env, "API_KEY": "s3cret-key"}
    api = start_api(env, stack.logs / "api-with-key.log", port)
    url = f"http://127.0.0.1:{port}"
    try:
        one_line_error(mnist(url, "train", *TINY), "401", "--api-key", "MNIST_API_KEY")
        one_line_error(mnist(url, "--api-key", "wrong", "train", *TINY), "401")
        with_option = mnist(url, "--api-key", "s3cret-key", "train", *TINY, "--json")
        assert with_option.returncode == 0, with_option.stderr
        from_env = mnist(url, "train", *TINY, "--json", MNIST_API_KEY="s3cret-key")
        assert from_env.returncode == 0, from_env.stderr
        for result in (with_option, from_env):
            assert stack.wait(json.loads(result.stdout)["id"])["status"] == "succeeded"
        assert mnist(url, "jobs").returncode == 0  # reads need no key
    finally:
        stop(api)


def test_serve_runs_scripts_dev(stack: Stack, tmp_path: Path) -> None:
    """``mnist serve`` starts worker and API (here on the stack's Redis, its own keys)."""
    port = free_port()
    env = cli_env(
        stack.url,
        REDIS_URL=stack.redis_url,
        KEY_PREFIX="serve-test:",
        MODEL_DIR=str(tmp_path / "models"),
        MNIST_DOWNLOAD="false",
    )
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(MNIST), "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,  # the script finds its checkout by itself
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _live(url) or proc.poll() is not None, 60, "mnist serve")
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        result = mnist(url, "train", *TINY, "--wait")
        assert result.returncode == 0, (result.stderr, (tmp_path / "serve.log").read_text())
        assert "succeeded after 3 of 3 epochs" in result.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def _live(url: str) -> bool:
    try:
        return httpx.get(f"{url}/livez", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
