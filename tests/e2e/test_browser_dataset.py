"""The page's "Dataset and errors" part in real headless Chromium against the real
service: the sample grid, and a freshly trained model's confusion matrix and errors."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack
from tests.procs import REPO

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = REPO / "test-artifacts"
QUICK = {"epochs": 3, "train_size": 2000, "minibatches": 20, "eta": 0.01, "input_scaling": "unit"}

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI=true but no Chromium at {CHROMIUM}")
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)


@pytest.fixture
def page() -> Iterator["sync_api.Page"]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        page.screenshot(path=ARTIFACTS / "browser-dataset.png", full_page=True)
        browser.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_dataset_grid_confusion_matrix_and_errors(page: "sync_api.Page", stack: Stack) -> None:
    job = stack.wait(stack.submit(**QUICK))
    assert job["status"] == "succeeded", job
    model = stack.http.get(f"/models/{job['id']}").json()

    page.goto(stack.url + "/")
    page.wait_for_selector('#dataset-grid[data-count="120"]')
    assert page.locator("#dataset-grid .class-row").count() == 10
    assert page.locator('#dataset-grid .class-row[data-label="7"] canvas').count() == 12

    page.click(f'#models tbody tr[data-id="{job["id"]}"] button.show-errors')
    shown = min(100, len(model["errors"]))
    page.wait_for_selector(f'#errors-grid[data-count="{shown}"]')
    assert page.locator("#confusion tr").count() == 11  # a header and ten labels
    diagonal = sum(model["confusion"][k][k] for k in range(10))
    cells = page.locator("#confusion td")
    assert sum(int(cells.nth(11 * k).inner_text()) for k in range(10)) == diagonal
    first = model["errors"][0]
    caption = page.locator("#errors-grid figure figcaption").first.inner_text()
    assert caption == f"{first['label']} → {first['predicted']}"
