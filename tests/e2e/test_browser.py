"""The web page in real headless Chromium (Debian's ``chromium``, driven by Playwright;
no browser download), against the real service: draw, upload, train, API key.

Screenshots go to ``test-artifacts/``; with ``UPDATE_SCREENSHOT=1`` the page's
screenshot is also written to ``docs/screenshot.png`` for the README.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.mnist import Mnist
from tests.digits import dark_on_light_png
from tests.e2e.conftest import Stack
from tests.procs import REPO, free_port, start_api, stop

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"
GOOD = {"epochs": 15, "train_size": 20_000, "minibatches": 40, "eta": 0.01, "input_scaling": "unit"}
TIMEOUT_MS = 30_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":  # .ci/run installs it: a skip there would hide a gap
        raise RuntimeError(f"CI=true but no Chromium at {CHROMIUM}")
    pytest.skip(
        f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def browser() -> Iterator["sync_api.Browser"]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: "sync_api.Browser", request: pytest.FixtureRequest) -> Iterator["sync_api.Page"]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.screenshot(path=ARTIFACTS / f"browser-{request.node.name}.png", full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def good_model(stack: Stack) -> str:
    """A model trained on 20,000 real MNIST images (about 90% on the test set)."""
    job_id = stack.submit(**GOOD)
    job = stack.wait(job_id)
    assert job["status"] == "succeeded" and job["test_accuracy"] > 0.85, job
    return job_id


def strokes_of(digit: np.ndarray, threshold: int = 128) -> list[tuple[int, int, int]]:
    """The digit as horizontal pen strokes: one per run of ink in each of its rows,
    as ``(row, first column, last column)`` in MNIST pixels."""
    image = np.asarray(digit).reshape(28, 28) >= threshold
    strokes = []
    for row in range(28):
        col = 0
        while col < 28:
            if image[row, col]:
                start = col
                while col + 1 < 28 and image[row, col + 1]:
                    col += 1
                strokes.append((row, start, col))
            col += 1
    return strokes


def draw(page: "sync_api.Page", digit: np.ndarray) -> int:
    """Draw the digit on the pad with the mouse, stroke by stroke; returns the strokes."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    scale = box["width"] / 28
    strokes = strokes_of(digit)
    for row, first, last in strokes:
        y = box["y"] + (row + 0.5) * scale
        page.mouse.move(box["x"] + (first + 0.5) * scale, y)
        page.mouse.down()
        page.mouse.move(box["x"] + (last + 0.5) * scale, y, steps=max(2, last - first))
        page.mouse.up()
    return len(strokes)


def label_for(page: "sync_api.Page", source: str) -> str:
    """The label the page shows once the prediction for ``source`` is in."""
    page.wait_for_selector(f'#label[data-for="{source}"]')
    return page.locator("#label").inner_text()


def test_draw_real_test_digits_and_see_their_labels(
    page: "sync_api.Page", stack: Stack, good_model: str, mnist_data: Mnist
) -> None:
    page.goto(stack.url + "/")
    assert page.title() == "mnist-service"
    # pick the good model for the pad (other tests train smaller ones that become newest)
    page.wait_for_selector(f'#model-picker option[value="{good_model}"]', state="attached")
    page.select_option("#model-picker", good_model)

    checked = 0
    for index in (0, 1, 2, 3, 4):  # a 7, a 2, a 1, a 0 and a 4
        digit, truth = mnist_data.test_images[index], int(mnist_data.test_labels[index])
        page.click("#clear")
        strokes = draw(page, digit)
        assert page.locator("#pad").get_attribute("data-strokes") == str(strokes)
        assert label_for(page, str(strokes)) == str(truth), f"test image {index}"
        bars = page.locator("#bars li")
        assert bars.count() == 10
        assert "top" in (bars.nth(truth).get_attribute("class") or "")
        assert page.locator("#predict-status").inner_text() == f"model {good_model[:8]}"
        checked += 1
        page.screenshot(path=ARTIFACTS / f"browser-drawn-{index}.png")
    assert checked == 5
    # the 28x28 image the model saw is drawn: some bright pixels on black
    lit = page.evaluate(
        """() => {
            const data = document.querySelector('#seen').getContext('2d')
                .getImageData(0, 0, 28, 28).data;
            let n = 0;
            for (let i = 0; i < data.length; i += 4) if (data[i] > 128) n++;
            return n;
        }"""
    )
    assert 20 < lit < 400


def test_touch_strokes_draw_too(page: "sync_api.Page", stack: Stack, good_model: str) -> None:
    """A vertical finger stroke (Chrome DevTools touch events): a 1."""
    page.goto(stack.url + "/")
    page.wait_for_selector(f'#model-picker option[value="{good_model}"]', state="attached")
    page.select_option("#model-picker", good_model)
    box = page.locator("#pad").bounding_box()
    assert box is not None
    cdp = page.context.new_cdp_session(page)
    x = box["x"] + box["width"] / 2
    points = [box["y"] + box["height"] * t / 20 for t in range(3, 18)]
    cdp.send(
        "Input.dispatchTouchEvent",
        {"type": "touchStart", "touchPoints": [{"x": x, "y": points[0]}]},
    )
    for y in points[1:]:
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    assert label_for(page, "1") == "1"


def test_upload_a_png(
    page: "sync_api.Page", stack: Stack, good_model: str, mnist_data: Mnist, tmp_path: Path
) -> None:
    png = tmp_path / "digit.png"
    png.write_bytes(dark_on_light_png(mnist_data.test_images[1], 6, (400, 300), (150, 60)))
    page.goto(stack.url + "/")
    page.wait_for_selector(f'#model-picker option[value="{good_model}"]', state="attached")
    page.select_option("#model-picker", good_model)
    page.set_input_files("#upload", str(png))
    assert label_for(page, "upload:digit.png") == str(mnist_data.test_labels[1])

    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image")
    page.set_input_files("#upload", str(garbage))
    page.wait_for_selector('#label[data-for="upload:garbage.png"]')
    assert "415" in page.locator("#predict-status").inner_text()


def test_train_from_the_form_and_watch_the_curve(
    page: "sync_api.Page", stack: Stack, good_model: str
) -> None:
    page.goto(stack.url + "/")
    epochs = page.locator('#params input[name="epochs"]')
    # defaults and limits come from /openapi.json's TrainParams schema
    assert epochs.input_value() == "1000"
    assert epochs.get_attribute("min") == "1" and epochs.get_attribute("max") == "5000"
    assert page.locator('#params select[name="lr_schedule"]').input_value() == "compound"
    assert page.locator('#params input[name="shuffle"]').is_checked()
    assert (
        "range 1 to 1024" in page.locator('#params label:has(input[name="n_hidden"])').inner_text()
    )

    # a job long enough to be seen running, then cancelled from its row
    epochs.fill("2000")
    page.fill('#params input[name="train_size"]', "10000")
    page.click("#train-button")
    page.wait_for_selector('#jobs tbody tr[data-status="running"]')
    page.wait_for_function("Number(document.querySelector('#curve').dataset.points) >= 2")
    page.click('#jobs tbody tr[data-status="running"] button.cancel')
    page.wait_for_selector("#curve-job:has-text('cancelled')")

    # a short one with a validation split: the curve gets all its points
    epochs.fill("8")
    page.fill('#params input[name="train_size"]', "2000")
    page.fill('#params input[name="minibatches"]', "20")
    page.fill('#params input[name="eta"]', "0.01")
    page.fill('#params input[name="validation_fraction"]', "0.1")
    page.select_option('#params select[name="input_scaling"]', "unit")
    page.click("#train-button")
    page.wait_for_selector("#train-status:has-text('queued')")
    page.wait_for_selector("#curve-job:has-text('succeeded')")
    assert page.locator("#curve").get_attribute("data-points") == "8"
    job_id = page.locator("#jobs tbody tr.selected").get_attribute("data-id")
    assert job_id is not None
    job = stack.job(job_id)
    assert job["status"] == "succeeded" and job["params"]["validation_fraction"] == 0.1
    assert all(row["val_accuracy"] is not None for row in job["history"])
    page.wait_for_selector(f'#models tbody tr[data-id="{job_id}"]')

    # the picture for the README: a drawn digit, bars, curve, jobs, models
    page.select_option("#model-picker", good_model)
    page.click("#clear")
    draw_seven(page)
    page.wait_for_selector('#label[data-for]:not([data-for=""])')
    shot = ARTIFACTS / "page.png"
    page.screenshot(path=shot, full_page=True)
    if os.environ.get("UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, REPO / "docs" / "screenshot.png")

    # an out-of-range value the browser lets through is the server's clear message
    page.fill('#params input[name="eta"]', "0")
    page.click("#train-button")
    page.wait_for_selector("#train-status.error")
    assert "eta" in page.locator("#train-status").inner_text()


def draw_seven(page: "sync_api.Page") -> None:
    box = page.locator("#pad").bounding_box()
    assert box is not None
    x, y, s = box["x"], box["y"], box["width"] / 28
    page.mouse.move(x + 7 * s, y + 6 * s)
    page.mouse.down()
    page.mouse.move(x + 21 * s, y + 6 * s, steps=10)
    page.mouse.move(x + 12 * s, y + 23 * s, steps=12)
    page.mouse.up()


def test_the_page_asks_for_the_api_key(browser: "sync_api.Browser", stack: Stack) -> None:
    port = free_port()
    api = start_api({**stack.env, "API_KEY": "page-key"}, stack.logs / "api-key-page.log", port)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        page.fill('#params input[name="epochs"]', "1")
        page.fill('#params input[name="train_size"]', "1000")
        page.click("#train-button")
        dialog = page.locator("#key-dialog")
        dialog.wait_for(state="visible")
        page.fill("#key-input", "page-key")
        page.click("#key-ok")
        page.wait_for_selector("#train-status:has-text('queued')")
        job_id = page.locator("#jobs tbody tr.selected").get_attribute("data-id")
        assert job_id and stack.job(job_id)["params"]["train_size"] == 1000
        page.screenshot(path=ARTIFACTS / "browser-api-key.png", full_page=True)
    finally:
        context.close()
        stop(api)
