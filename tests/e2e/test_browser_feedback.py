"""Corrections on the page in real headless Chromium against the real service: "Wrong?
It is: 3" under an answer, "Your digits" (counts, the gallery, delete, the serving
model's accuracy on them) and the fine-tune button. Asserts what a person sees."""

import re

import numpy as np
import pytest

from shared.data.mnist import Mnist
from tests.e2e import chromium
from tests.e2e.chromium import ARTIFACTS, sync_api
from tests.e2e.conftest import Stack
from tests.e2e.test_browser import draw, label_for

# one Chromium per module, a page per test that fails on a JavaScript error (chromium.py)
browser = chromium.browser
page = chromium.page

pytestmark = pytest.mark.e2e

FINETUNE_STATUS = re.compile(r"^job ([0-9a-f]{8}) (queued|running|succeeded), epoch \d+/3")


def text_is(page: "sync_api.Page", selector: str, pattern: str) -> str:
    """The element's text once it matches ``pattern`` (a regular expression)."""
    page.wait_for_function(
        "([s, p]) => new RegExp(p).test(document.querySelector(s).textContent)",
        arg=[selector, pattern],
    )
    return page.locator(selector).inner_text()


def count_of(page: "sync_api.Page", digit: int) -> str:
    return page.locator(f'#feedback-counts td[data-digit="{digit}"]').inner_text()


def seen_pixels(page: "sync_api.Page") -> list[int]:
    """The red channel of the "what the model saw" canvas (grey: all channels equal)."""
    pixels: list[int] = page.evaluate(
        """() => Array.from(document.querySelector('#seen').getContext('2d')
            .getImageData(0, 0, 28, 28).data).filter((_, i) => i % 4 === 0)"""
    )
    return pixels


def gallery_pixels(page: "sync_api.Page") -> dict:
    """The first gallery image's natural size and pixels, once it has loaded."""
    page.wait_for_function(
        "() => { const i = document.querySelector('#feedback-grid img');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    found: dict = page.evaluate(
        """() => {
            const img = document.querySelector('#feedback-grid img');
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d');
            g.drawImage(img, 0, 0);
            const data = g.getImageData(0, 0, c.width, c.height).data;
            return {width: img.naturalWidth, height: img.naturalHeight,
                    pixels: Array.from(data).filter((_, i) => i % 4 === 0)};
        }"""
    )
    return found


def test_correct_a_drawing_see_it_in_your_digits_delete_it_and_fine_tune(
    page: "sync_api.Page", stack: Stack, tiny_model: str, mnist_data: Mnist
) -> None:
    three = int(np.flatnonzero(np.asarray(mnist_data.test_labels) == 3)[0])
    page.goto(stack.url + "/")
    text_is(page, "#serving", f"^Serving: newest model {tiny_model[:8]}")
    # nothing sent yet: every count is 0, the gallery is empty and says why
    text_is(page, "#feedback-empty", "No corrections yet")
    assert [count_of(page, d) for d in range(10)] == ["0"] * 10
    assert page.locator("#feedback-bar").is_hidden()

    strokes = draw(page, mnist_data.test_images[three])
    shown = label_for(page, str(strokes))
    bar = page.locator("#feedback-bar")
    assert bar.is_visible()
    assert "Wrong? It is:" in bar.inner_text() and "Right" in bar.inner_text()
    assert bar.locator("#wrong-digits button").all_inner_texts() == [str(d) for d in range(10)]

    bar.locator('#wrong-digits button[data-digit="3"]').click()
    assert text_is(page, "#feedback-status", "^saved") == "saved: a 3" + (
        " (right)" if shown == "3" else ""
    )
    text_is(page, '#feedback-counts td[data-digit="3"]', "^1$")
    assert [count_of(page, d) for d in range(10) if d != 3] == ["0"] * 9
    assert page.locator("#feedback-counts td.total").inner_text() == "1"
    # the gallery: one image, 28x28, exactly the pixels the model saw
    figures = page.locator("#feedback-grid figure")
    assert figures.count() == 1 and figures.first.locator("figcaption span").inner_text() == "3"
    image = gallery_pixels(page)
    assert (image["width"], image["height"]) == (28, 28)
    assert image["pixels"] == seen_pixels(page)
    assert page.locator("#feedback-empty").is_hidden()
    # the serving model's accuracy on them: the same model and pixels as the answer above
    right = 1 if shown == "3" else 0
    accuracy = text_is(page, "#feedback-accuracy", "reads")
    assert f"({tiny_model[:8]}) reads {right} of your 1 digit right: {100 * right:.1f}%" in (
        accuracy
    )
    # what the API keeps is what the page said
    listed = stack.http.get("/feedback").json()
    assert listed["total"] == 1
    item = listed["items"][0]
    assert (item["label"], str(item["predicted"]), item["model_id"], item["source"]) == (
        3,
        shown,
        tiny_model,
        "pixels",
    )
    assert figures.first.get_attribute("data-id") == item["id"]
    # the same answer again: the first one, said so
    bar.locator('#wrong-digits button[data-digit="3"]').click()
    assert text_is(page, "#feedback-status", "^already saved").startswith("already saved: a 3")
    page.screenshot(path=ARTIFACTS / "browser-feedback.png", full_page=True)

    # delete it from the gallery: gone from the page and from the service
    figures.first.locator("button.delete").click()
    text_is(page, '#feedback-counts td[data-digit="3"]', "^0$")
    page.wait_for_selector('#feedback-grid[data-count="0"]', state="attached")
    assert figures.count() == 0
    assert page.locator("#feedback-empty").is_visible()
    assert stack.http.get("/feedback").json()["total"] == 0
    assert stack.http.get(f"/feedback/{item['id']}").status_code == 404

    # "Right" stores the answer as it was (label = prediction): saved anew after the delete
    page.click("#right-button")
    assert text_is(page, "#feedback-status", "^saved") == f"saved: a {shown} (right)"
    text_is(page, f'#feedback-counts td[data-digit="{shown}"]', "^1$")

    # fine-tune the serving model: a job starts with the README's recipe and is followed
    page.click("#finetune-button")
    status = text_is(page, "#finetune-status", FINETUNE_STATUS.pattern)
    started = FINETUNE_STATUS.match(status)
    assert started, status
    short_id = started[1]
    job_id = page.locator("#finetune-status").get_attribute("data-job-id")
    assert job_id and job_id.startswith(short_id)
    job = stack.job(job_id)
    assert job["init_model_id"] == tiny_model and job["feedback_weight"] == 50
    assert (job["params"]["epochs"], job["params"]["eta"]) == (3, 0.005)
    assert job["promote"] == {
        "alias": "production",
        "metric": "feedback_accuracy",
        "min_gain": 0.01,
    }
    page.wait_for_selector(f'#jobs tbody tr[data-id="{job_id}"]')
    assert text_is(page, "#curve-job", f"^job {short_id}")
    page.screenshot(path=ARTIFACTS / "browser-feedback-finetune.png", full_page=True)
