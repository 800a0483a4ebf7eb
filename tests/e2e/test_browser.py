"""The web page in real headless Chromium (tests/e2e/chromium.py) against the real
service: draw, upload, train, API key.

Screenshots go to ``test-artifacts/``; with ``UPDATE_SCREENSHOT=1`` the page's
screenshot is also written to ``docs/screenshot.png`` for the README.
"""

import os
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from shared.data.mnist import Mnist
from tests.digits import dark_on_light_png
from tests.e2e import chromium
from tests.e2e.chromium import ARTIFACTS, TIMEOUT_MS, sync_api
from tests.e2e.conftest import Stack
from tests.procs import REPO, free_port, start_api, stop

pytestmark = pytest.mark.e2e

GOOD = {"epochs": 15, "train_size": 20_000, "minibatches": 40, "eta": 0.01, "input_scaling": "unit"}
KEY = {"X-API-Key": "read-key"}

browser = chromium.browser
page = chromium.page


def open_with_model(page: "sync_api.Page", stack: Stack, model_id: str) -> None:
    """The page, with ``model_id`` picked for the pad: other tests train smaller models,
    which become the newest and so the default."""
    page.goto(stack.url + "/")
    page.wait_for_selector(f'#model-picker option[value="{model_id}"]', state="attached")
    page.select_option("#model-picker", model_id)


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
    open_with_model(page, stack, good_model)
    assert page.title() == "mnist-service"

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
    open_with_model(page, stack, good_model)
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
    open_with_model(page, stack, good_model)
    page.set_input_files("#upload", str(png))
    assert label_for(page, "upload:digit.png") == str(mnist_data.test_labels[1])

    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image")
    page.set_input_files("#upload", str(garbage))
    page.wait_for_selector('#label[data-for="upload:garbage.png"]')
    assert "415" in page.locator("#predict-status").inner_text()


CAPTION = re.compile(r"^job ([0-9a-f]{8}): (\w+), epoch (\d+)/(\d+)$")


def progress_seen(page: "sync_api.Page") -> dict:
    """One snapshot of what the page shows of the followed job: the curve's caption, the
    points drawn, and its row in the jobs table."""
    seen: dict = page.evaluate(
        """() => {
            const row = document.querySelector('#jobs tbody tr.selected');
            return {
                caption: document.querySelector('#curve-job').textContent,
                points: Number(document.querySelector('#curve').dataset.points),
                row: row ? row.cells[2].textContent : null,
                rowStatus: row ? row.cells[1].textContent : null,
            };
        }"""
    )
    return seen


def test_train_from_the_form_and_watch_the_curve(
    page: "sync_api.Page", stack: Stack, good_model: str
) -> None:
    page.goto(stack.url + "/")
    epochs = page.locator('#params input[name="epochs"]')
    # the page starts from the fast preset; the book's run is one click away
    assert page.locator('#presets input[value="fast"]').is_checked()
    assert epochs.input_value() == "30"
    assert page.locator('#params select[name="lr_schedule"]').input_value() == "inverse"
    assert page.locator('#params select[name="input_scaling"]').input_value() == "unit"
    page.check('#presets input[value="book"]')
    assert epochs.input_value() == "1000"
    assert page.locator('#params select[name="lr_schedule"]').input_value() == "compound"
    assert page.locator('#params input[name="n_hidden"]').input_value() == "50"
    # limits come from /openapi.json's TrainParams schema
    assert epochs.get_attribute("min") == "1" and epochs.get_attribute("max") == "5000"
    assert page.locator('#params input[name="shuffle"]').is_checked()
    assert (
        "range 1 to 1024" in page.locator('#params label:has(input[name="n_hidden"])').inner_text()
    )

    # a job long enough to be seen running, then cancelled from its row
    epochs.fill("2000")
    page.fill('#params input[name="train_size"]', "10000")
    page.click("#train-button")
    page.wait_for_selector('#jobs tbody tr[data-status="running"]')
    # while it runs, the caption, the curve and the table tell the same epoch
    for at_least in (2, 4, 6):
        page.wait_for_function(
            f"Number(document.querySelector('#curve').dataset.points) >= {at_least}"
        )
        seen = progress_seen(page)
        caption = CAPTION.match(seen["caption"])
        assert caption, seen
        assert caption[2] == "running" and caption[4] == "2000", seen
        assert int(caption[3]) == seen["points"] >= at_least, seen
        assert seen["row"] == f"{seen['points']}/2000" and seen["rowStatus"] == "running", seen
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
    page.wait_for_selector("#curve-job:has-text('succeeded')")
    assert page.locator("#curve").get_attribute("data-points") == "8"
    job_id = page.locator("#jobs tbody tr.selected").get_attribute("data-id")
    assert job_id is not None
    job = stack.job(job_id)
    assert job["status"] == "succeeded" and job["params"]["validation_fraction"] == 0.1
    assert job["params"]["n_hidden"] == 50  # the book preset's, still chosen
    assert all(row["val_accuracy"] is not None for row in job["history"])
    # beside "Start training": the job's end, not the "queued" of its submission
    page.wait_for_selector("#train-status:has-text('succeeded')")
    status = page.locator("#train-status").inner_text()
    assert status.startswith(f"job {job_id[:8]} succeeded, epoch 8/8: test accuracy ")
    assert "queued" not in status
    assert CAPTION.match(page.locator("#curve-job").inner_text())[3] == "8"  # type: ignore[index]
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
        page.wait_for_selector("#jobs tbody tr.selected")
        job_id = page.locator("#jobs tbody tr.selected").get_attribute("data-id")
        assert job_id and stack.job(job_id)["params"]["train_size"] == 1000
        page.screenshot(path=ARTIFACTS / "browser-api-key.png", full_page=True)
    finally:
        context.close()
        stop(api)


def test_with_protected_reads_the_key_goes_with_images_and_downloads(
    browser: "sync_api.Browser", stack: Stack, good_model: str, mnist_data: Mnist
) -> None:
    """With PROTECT_PREDICT, a correction's image and a model's file need the key too,
    which a plain <img> or download link cannot send: the page reads them with it."""
    port = free_port()
    env = {**stack.env, "API_KEY": "read-key", "PROTECT_PREDICT": "true"}
    api = start_api(env, stack.logs / "api-protected-reads.log", port)
    url = f"http://127.0.0.1:{port}"
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        pixels = np.asarray(mnist_data.test_images[0]).reshape(28, 28).tolist()
        with httpx.Client(base_url=url, timeout=30) as http:
            sent = http.post("/feedback", json={"pixels": pixels, "label": 7}, headers=KEY)
            assert sent.status_code == 201, sent.text
            image = f"/feedback/{sent.json()['id']}.png"
            assert http.get(image).status_code == 401  # no key, no image
            size = http.get(f"/models/{good_model}", headers=KEY).json()["size_bytes"]
        page.goto(url + "/")
        page.locator("#key-dialog").wait_for(state="visible")  # the first protected read
        page.fill("#key-input", "read-key")
        page.click("#key-ok")
        # the correction's image, read with the key
        page.wait_for_function(
            """() => [...document.querySelectorAll('#feedback-grid img')]
                .some((i) => i.complete && i.naturalWidth === 28)"""
        )
        # a model's file, read with the key and saved under its name
        link = page.locator(f'#models tbody tr[data-id="{good_model}"] a.npz')
        with page.expect_download() as saved:
            link.click()
        assert saved.value.suggested_filename == f"{good_model}.npz"
        assert Path(saved.value.path()).stat().st_size == size
        assert not page.locator("#models-status.error").is_visible()
    finally:
        context.close()
        stop(api)


BARS_SEEN = """() => [...document.querySelectorAll('#bars li')].map((li) => ({
    fill: li.querySelector('.fill').getBoundingClientRect().width,
    track: li.querySelector('.bar').getBoundingClientRect().width,
    text: li.querySelector('.p').textContent,
}))"""


def test_probability_bars_are_drawn_as_wide_as_their_probability(
    page: "sync_api.Page", stack: Stack, good_model: str
) -> None:
    open_with_model(page, stack, good_model)
    with page.expect_response(lambda r: r.url.endswith("/predict/image")) as answer:
        draw_seven(page)
    probabilities = answer.value.json()["probabilities"]
    page.wait_for_selector('#label[data-for]:not([data-for=""])')
    bars = page.evaluate(BARS_SEEN)
    assert len(bars) == 10
    for digit, (bar, p) in enumerate(zip(bars, probabilities, strict=True)):
        assert bar["track"] > 100, bar  # a visible track
        # the coloured part covers the share of the track the probability says (±1 px)
        assert abs(bar["fill"] - p * bar["track"]) <= 1.0, (digit, bar, p)
        assert abs(float(bar["text"].rstrip("%")) - 100 * p) <= 0.051, (digit, bar, p)
    top = max(range(10), key=lambda d: probabilities[d])
    assert bars[top]["fill"] > 0.5 * bars[top]["track"]  # a confident 7 fills most of its bar
    assert page.locator("#label").inner_text() == str(top)
    # together the ten bars fill one track: the probabilities sum to 1
    assert abs(sum(b["fill"] for b in bars) - bars[0]["track"]) <= 3

    page.click("#clear")
    assert all(b["fill"] == 0 and b["text"] == "\u2013" for b in page.evaluate(BARS_SEEN))


def test_the_empty_pad_says_draw_a_digit_here(
    page: "sync_api.Page", stack: Stack, good_model: str
) -> None:
    page.goto(stack.url + "/")
    hint = page.locator("#pad-hint")
    pad = page.locator("#pad").bounding_box()
    assert pad is not None
    assert hint.is_visible() and hint.inner_text() == "draw a digit here"
    text = page.evaluate(
        """() => {
            const range = document.createRange();
            range.selectNodeContents(document.querySelector('#pad-hint'));
            const r = range.getBoundingClientRect();
            return {x: r.x, y: r.y, width: r.width, height: r.height};
        }"""
    )
    # the words themselves lie inside the pad, around its middle
    assert text["width"] > 40 and text["height"] > 8
    assert pad["x"] < text["x"] and text["x"] + text["width"] < pad["x"] + pad["width"]
    middle = text["y"] + text["height"] / 2
    assert abs(middle - (pad["y"] + pad["height"] / 2)) < pad["height"] / 8
    draw_seven(page)
    assert hint.is_hidden()
    page.wait_for_selector('#label[data-for]:not([data-for=""])')
    page.click("#clear")
    assert hint.is_visible()
    # the words lie over the pad, not in it: the picture sent for a stroke holds no text
    blank = page.evaluate(
        """() => document.querySelector('#pad').getContext('2d')
            .getImageData(0, 0, 280, 280).data.every((v) => v === 255)"""
    )
    assert blank is True


def test_every_training_field_says_what_it_means(page: "sync_api.Page", stack: Stack) -> None:
    schema = stack.http.get("/openapi.json").json()["components"]["schemas"]["TrainParams"]
    page.goto(stack.url + "/")
    page.wait_for_selector('#params input[name="epochs"]')
    names = page.eval_on_selector_all(
        "#params input, #params select", "(els) => els.map((e) => e.name)"
    )
    assert names == list(schema["properties"])
    for name, field in schema["properties"].items():
        description = field["description"]
        assert description and len(description) < 110, name  # one line
        meaning = page.locator(f'#params label:has([name="{name}"]) .meaning')
        assert meaning.inner_text() == description, name
        box = meaning.bounding_box()
        assert meaning.is_visible() and box is not None and box["height"] > 5, name
    schedule = page.locator('#params label:has([name="lr_schedule"])').inner_text()
    assert "compound" in schedule and "inverse" in schedule


def test_a_job_from_the_fast_preset(page: "sync_api.Page", stack: Stack) -> None:
    page.goto(stack.url + "/")
    page.wait_for_selector('#params input[name="epochs"]')
    page.fill('#params input[name="epochs"]', "2")
    page.fill('#params input[name="train_size"]', "6000")
    with page.expect_response(lambda r: "/jobs?" in r.url and r.request.method == "POST") as sent:
        page.click("#train-button")
    assert sent.value.status == 202 and sent.value.url.endswith("/jobs?preset=fast")
    job_id = sent.value.json()["id"]
    page.wait_for_selector("#train-status:has-text('succeeded')", timeout=120_000)
    params = stack.job(job_id)["params"]
    fast = stack.http.get("/presets.json").json()["fast"]
    assert params == {**fast, "epochs": 2, "train_size": 6000}


def test_favicon(page: "sync_api.Page", stack: Stack) -> None:
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else 0)
    page.goto(stack.url + "/")
    page.wait_for_selector('#params input[name="epochs"]')
    # the icon the page links, and /favicon.ico that browsers ask for anyway, both draw
    for href in ("/static/favicon.svg", "/favicon.ico"):
        size = page.evaluate(
            """(href) => new Promise((done) => {
                const image = new Image();
                image.onload = () => done([image.naturalWidth, image.naturalHeight]);
                image.onerror = () => done(null);
                image.src = href;
            })""",
            href,
        )
        assert size and size[0] >= 16 and size[1] >= 16, (href, size)
    assert page.locator('link[rel="icon"]').get_attribute("href") == "/static/favicon.svg"
    assert not failed


QUICK = {"epochs": 3, "train_size": 2000, "minibatches": 20, "eta": 0.01, "input_scaling": "unit"}


def curve_says(page: "sync_api.Page", job_id: str, status: str, epochs: int) -> None:
    """Wait until the learning curve shows ``job_id`` ended as ``status`` with all its points."""
    page.wait_for_function(
        """([caption, points]) => document.querySelector('#curve-job').textContent === caption
            && document.querySelector('#curve').dataset.points === points""",
        arg=[f"job {job_id[:8]}: {status}, epoch {epochs}/{epochs}", str(epochs)],
    )


def test_the_newest_jobs_curve_shows_without_a_click(page: "sync_api.Page", stack: Stack) -> None:
    job_id = stack.submit(**QUICK, validation_fraction=0.1)
    assert stack.wait(job_id)["status"] == "succeeded"
    assert stack.http.get("/jobs?limit=1").json()["items"][0]["id"] == job_id  # the newest
    page.goto(stack.url + "/")
    # a finished training's curve is there at once: no "no epochs yet" until a click
    curve_says(page, job_id, "succeeded", 3)
    assert page.locator("#jobs tbody tr.shown").get_attribute("data-id") == job_id
    assert page.locator("#jobs tbody tr.selected").count() == 0  # nobody picked it
    page.locator(".curve").screenshot(path=ARTIFACTS / "browser-newest-curve.png")

    # a newer job (queued elsewhere: here the API) takes the curve over while nothing is picked
    newer = stack.submit(**QUICK)
    curve_says(page, newer, "succeeded", 3)
    assert page.locator("#jobs tbody tr.shown").get_attribute("data-id") == newer

    # a picked job keeps the curve when another job comes
    page.locator(f'#jobs tbody tr[data-id="{job_id}"]').click()
    curve_says(page, job_id, "succeeded", 3)
    newest = stack.submit(**QUICK)
    page.wait_for_selector(f'#jobs tbody tr[data-id="{newest}"]')
    assert stack.wait(newest)["status"] == "succeeded"
    page.wait_for_selector(f'#jobs tbody tr[data-id="{newest}"][data-status="succeeded"]')
    curve_says(page, job_id, "succeeded", 3)
    assert page.locator("#jobs tbody tr.selected").get_attribute("data-id") == job_id
    assert page.locator("#jobs tbody tr.shown").count() == 0


def test_no_empty_box_or_dash_before_the_first_prediction(
    page: "sync_api.Page", stack: Stack, good_model: str
) -> None:
    open_with_model(page, stack, good_model)
    label = page.locator("#label")
    seen = page.locator("#seen")
    # nothing asked yet: no black "what the model saw" box, no dash where the digit will be
    assert seen.is_hidden() and page.locator("#seen-box").is_hidden()
    assert label.inner_text() == ""
    assert page.locator("#feedback-bar").is_hidden()
    page.locator("#draw-section").screenshot(path=ARTIFACTS / "browser-before-first-answer.png")

    draw_seven(page)
    page.wait_for_selector('#label[data-for]:not([data-for=""])')
    assert re.fullmatch(r"\d", label.inner_text())
    assert seen.is_visible() and page.locator("#seen-box").inner_text().startswith("what the model")

    page.click("#clear")  # empty again: as before the first answer
    assert seen.is_hidden() and label.inner_text() == ""


def test_the_forms_bounds_and_defaults_are_the_schemas(page: "sync_api.Page", stack: Stack) -> None:
    spec = stack.http.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    train, request = schemas["TrainParams"]["properties"], schemas["SweepRequest"]["properties"]
    page.goto(stack.url + "/")
    page.wait_for_selector('#sweep-space tbody tr[data-field="eta"]')
    epochs = page.locator('#params input[name="epochs"]')
    assert float(epochs.get_attribute("max") or "nan") == train["epochs"]["maximum"]
    form = page.locator("#sweep-form")
    trials = form.locator('input[name="trials"]')
    assert float(trials.input_value()) == request["trials"]["default"]
    assert float(trials.get_attribute("max") or "nan") == request["trials"]["maximum"]
    samplers = form.locator('select[name="sampler"] option').all_inner_texts()
    assert samplers == schemas["Sampler"]["enum"]
    base_fraction = schemas["SweepBase"]["properties"]["validation_fraction"]["default"]
    assert float(page.locator('#sweep-base input[name="validation_fraction"]').input_value()) == (
        base_fraction
    )
    # a search row for each field the schema marks searchable, with its range to start from
    rows = page.eval_on_selector_all(
        "#sweep-space tbody tr",
        """(rows) => rows.map((r) => [r.dataset.field, r.querySelector('[name=on]').checked,
            r.querySelector('[name=low]').value, r.querySelector('[name=high]').value])""",
    )
    hints = {name: field["x-search"] for name, field in train.items() if "x-search" in field}
    assert [r[0] for r in rows] == list(hints) and len(hints) >= 5
    for name, on, low, high in rows:
        hint = hints[name]
        assert on is bool(hint.get("suggested")), name
        for typed, start in [(low, hint.get("low")), (high, hint.get("high"))]:
            assert (typed == "") if start is None else (float(typed) == pytest.approx(start)), name

    # the proof: another schema served, another form (nothing is kept in the page)
    train["epochs"]["maximum"] = 4321
    request["trials"].update(default=7, maximum=77)
    schemas["SweepBase"]["properties"]["validation_fraction"]["default"] = 0.25
    train["l1"]["x-search"] = {"low": 0.5, "high": 2, "log": False, "suggested": True}
    del train["n_hidden"]["x-search"]
    page.route("**/openapi.json", lambda route: route.fulfill(json=spec))
    page.reload()
    page.wait_for_selector('#sweep-space tbody tr[data-field="eta"]')
    assert epochs.get_attribute("max") == "4321"
    assert "range 1 to 4321" in page.locator('#params label:has(input[name="epochs"])').inner_text()
    assert trials.input_value() == "7" and trials.get_attribute("max") == "77"
    assert page.locator('#sweep-base input[name="validation_fraction"]').input_value() == "0.25"
    l1 = page.locator('#sweep-space tr[data-field="l1"]')
    assert l1.locator('input[name="on"]').is_checked()
    assert l1.locator('input[name="low"]').input_value() == "0.5"
    assert page.locator('#sweep-space tr[data-field="n_hidden"]').count() == 0
