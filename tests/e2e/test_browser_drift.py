"""The page's "Input drift" panel in real headless Chromium against the real service:
a model the worker trained (its reference profile from its own training data) serves
shifted, thickened digits, and the panel draws its seven histograms and says drifted."""

import numpy as np
import pytest

from shared.data.mnist import Mnist
from tests.digits import shifted, thickened
from tests.e2e import chromium
from tests.e2e.chromium import ARTIFACTS, sync_api
from tests.e2e.conftest import Stack
from tests.procs import wait_until

pytestmark = pytest.mark.e2e

QUICK = {"epochs": 3, "train_size": 2000, "minibatches": 20, "eta": 0.01, "input_scaling": "unit"}

# one Chromium per module, a page per test that fails on a JavaScript error (chromium.py)
browser = chromium.browser
page = chromium.page


def test_the_panel_draws_reference_against_served(
    page: "sync_api.Page", stack: Stack, mnist_data: Mnist
) -> None:
    job = stack.trained(**QUICK)
    digits = thickened(shifted(np.asarray(mnist_data.test_images[:300])))
    body = {"images": digits.astype(int).tolist(), "model_id": job["id"]}
    assert stack.http.post("/predict", json=body).status_code == 200
    report = wait_until(
        lambda: (r := stack.http.get(f"/models/{job['id']}/drift").json())["window"] == 300 and r,
        30,
        "the window",
    )
    assert report["reference_source"] == "training" and report["drifted"] is True

    page.goto(stack.url + "/")  # the newest model serves by default: this one
    page.wait_for_selector(f'#drift-section[data-model-id="{job["id"]}"][data-window="300"]')
    assert page.locator("#drift-section").get_attribute("data-drifted") == "true"
    assert page.locator("#drift-section figure.drift-chart").count() == 7
    summary = page.locator("#drift-section .drift-summary").inner_text()
    assert "drifted" in summary and "centroid_offset" in summary, summary
    chart = page.locator('#drift-section figure[data-summary="centroid_offset"]')
    bins = len(report["histograms"]["centroid_offset"]["edges"]) - 1
    assert chart.locator("rect").count() == 2 * bins  # reference and served, per bin
    psi = report["psi"]["centroid_offset"]
    assert f"PSI {psi:.3f}" in chart.locator("figcaption").inner_text()
    page.locator("#drift-section").screenshot(path=ARTIFACTS / "browser-drift.png")
