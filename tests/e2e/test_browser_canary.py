"""The page's split panel (api/static/canary.js) in real headless Chromium against two
real API processes: a running split shows beside the serving line with its candidate,
percent or shadow and agreement; Abort and Promote do what they say."""

import pytest

from tests.e2e import chromium
from tests.e2e.chromium import ARTIFACTS, sync_api
from tests.e2e.test_canary import Pair, fresh, pair

browser = chromium.browser
page = chromium.page
__all__ = ["fresh", "pair"]  # the fixtures, shared with test_canary.py

pytestmark = pytest.mark.e2e


def panel_says(page: "sync_api.Page", text: str) -> str:
    page.wait_for_function(
        "(t) => { const p = document.querySelector('#canary');"
        " return !p.hidden && p.textContent.includes(t); }",
        arg=text,
    )
    return page.locator("#canary").inner_text()


def test_the_split_beside_the_serving_line(fresh: Pair, page: "sync_api.Page") -> None:
    a, b = str(fresh.models[0]), str(fresh.models[1])
    url = str(fresh.http[0].base_url).rstrip("/")
    page.on("dialog", lambda dialog: dialog.accept())
    fresh.http[0].put("/aliases/production/canary", json={"model_id": b, "percent": 25})
    page.goto(url)
    text = panel_says(page, f"Canary: {b[:8]} answers 25%")
    assert "requests 0 primary / 0 canary" in text
    page.locator("#canary button", has_text="Abort").click()
    page.wait_for_function("() => document.querySelector('#canary').hidden")
    assert fresh.http[1].get("/aliases/production/canary").status_code == 404
    row = fresh.http[1].get("/aliases/production").json()["history"][0]
    assert (row["source"], row["reason"]) == ("canary", "aborted")

    fresh.http[1].put("/aliases/production/canary", json={"model_id": b, "mode": "shadow"})
    for _ in range(20):
        fresh.predict(1, [0] * 784)
    page.reload()
    panel_says(page, f"Shadow: {b[:8]} predicts beside {a[:8]}")
    assert "agreement" in panel_says(page, "of 20 images")  # both processes' counts, in time
    page.screenshot(path=ARTIFACTS / "browser-canary-shadow.png")
    page.locator("#canary button", has_text="Promote").click()
    page.wait_for_function("() => document.querySelector('#canary').hidden")
    page.wait_for_function(
        "(id) => document.querySelector('#serving').textContent.includes(id)", arg=b[:8]
    )
    assert fresh.http[0].get("/aliases/production").json()["model_id"] == b
