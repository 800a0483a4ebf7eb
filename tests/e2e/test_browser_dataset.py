"""The page's "Dataset and errors" part in real headless Chromium against the real
service: the sample grid, and a freshly trained model's confusion matrix and errors."""

import pytest

from tests.e2e import chromium
from tests.e2e.chromium import sync_api
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

QUICK = {"epochs": 3, "train_size": 2000, "minibatches": 20, "eta": 0.01, "input_scaling": "unit"}

# one Chromium per module, a page per test that fails on a JavaScript error (chromium.py)
browser = chromium.browser
page = chromium.page


def test_dataset_grid_confusion_matrix_and_errors(page: "sync_api.Page", stack: Stack) -> None:
    job = stack.trained(**QUICK)
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
