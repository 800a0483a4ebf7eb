"""Lineage on the page in real headless Chromium against the real service: a fine-tuned
model's row names its parent ("← 1a2b3c4d"), and a model's ancestry (model → parent →
grandparent, walked through GET /models/{id}) shows each step's test accuracy and, for a
fine-tune, its accuracy on the held-out corrections against its parent's; a deleted
ancestor ends the chain, said so. Asserts what a person sees."""

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from shared.data.mnist import Mnist
from tests.e2e import chromium
from tests.e2e.chromium import ARTIFACTS, sync_api
from tests.e2e.conftest import TINY, Stack

# one Chromium per module, a page per test that fails on a JavaScript error (chromium.py)
browser = chromium.browser
page = chromium.page

pytestmark = pytest.mark.e2e

FINETUNE = {"epochs": 1, "train_size": 2000, "minibatches": 20, "feedback_weight": 5}
CORRECTIONS = 10  # the fine-tunes hold a fifth out: 2 to measure on


def pct(value: float) -> str:
    """As the page shows an accuracy: JavaScript's (100 * v).toFixed(1), ties up."""
    return f"{Decimal(100 * value).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


def pts(a: float, b: float) -> str:
    """As the page shows a difference of accuracies, in percentage points."""
    d = 100 * (a - b)
    sign = "+" if d > 0 else "\u2212" if d < 0 else "±"
    return f"{sign}{Decimal(abs(d)).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)} pts"


def trained(stack: Stack, **params: object) -> dict:
    """The model card of a job's model, once the job succeeded."""
    card = stack.http.get(f"/models/{stack.trained(**params)['model_id']}")
    assert card.status_code == 200, card.text
    return card.json()


@pytest.fixture(scope="module")
def family(stack: Stack, mnist_data: Mnist) -> tuple[dict, dict, dict]:
    """(parent, child, grandchild) cards: a tiny model, a fine-tune of it on corrections
    (MNIST test images sent to POST /feedback with their labels), and one of the child."""
    parent = trained(stack, **TINY)
    for index in range(CORRECTIONS):
        body = {
            "pixels": np.asarray(mnist_data.test_images[index]).reshape(28, 28).tolist(),
            "label": int(mnist_data.test_labels[index]),
        }
        response = stack.http.post("/feedback", json=body)
        assert response.status_code == 201, response.text
    child = trained(stack, init_model=parent["id"], **FINETUNE)
    grandchild = trained(stack, init_model=child["id"], **FINETUNE)
    # what the API says before the page shows it
    assert parent["parent_model_id"] is None and parent["feedback_accuracy"] is None
    for card, its_parent in [(child, parent), (grandchild, child)]:
        assert card["parent_model_id"] == its_parent["id"]
        assert card["feedback_count"] == CORRECTIONS - CORRECTIONS // 5
        assert card["feedback_accuracy"] is not None
        assert card["parent_feedback_accuracy"] is not None
    listed = {m["id"]: m for m in stack.http.get("/models").json()["items"]}
    assert listed[child["id"]]["parent_model_id"] == parent["id"]
    assert listed[parent["id"]]["parent_model_id"] is None
    return parent, child, grandchild


def row(page: "sync_api.Page", model_id: str) -> "sync_api.Locator":
    return page.locator(f'#models tbody tr[data-id="{model_id}"]')


def cells(page: "sync_api.Page", selector: str) -> list[str]:
    return page.locator(f"#ancestry-table tbody tr {selector}").all_inner_texts()


def finetuned_text(card: dict) -> str:
    return (
        f"fine-tuned from {card['parent_model_id'][:8]} on {card['feedback_count']} "
        f"corrections; held-out corrections: {pct(card['feedback_accuracy'])} vs parent "
        f"{pct(card['parent_feedback_accuracy'])} "
        f"({pts(card['feedback_accuracy'], card['parent_feedback_accuracy'])})"
    )


def test_rows_name_their_parent_and_the_ancestry_walks_to_the_root_or_a_deleted_model(
    page: "sync_api.Page", stack: Stack, family: tuple[dict, dict, dict]
) -> None:
    parent, child, grandchild = family
    page.goto(stack.url + "/")
    page.wait_for_selector(f'#models tbody tr[data-id="{grandchild["id"]}"]')

    # each fine-tuned row says where it descends from; the parent's row names none
    assert row(page, child["id"]).locator("td.id").inner_text() == (
        f"{child['id'][:8]} ← {parent['id'][:8]}"
    )
    assert row(page, grandchild["id"]).locator("td.id").inner_text() == (
        f"{grandchild['id'][:8]} ← {child['id'][:8]}"
    )
    assert row(page, parent["id"]).locator("td.id").inner_text() == parent["id"][:8]
    assert row(page, parent["id"]).locator("button.parent").count() == 0
    assert page.locator("#ancestry").is_hidden()

    # the grandchild's "← child" opens its ancestry: grandchild → child → parent
    row(page, grandchild["id"]).locator("button.parent").click()
    page.wait_for_selector(f'#ancestry[data-model="{grandchild["id"]}"][data-steps="3"]')
    assert (
        page.locator("#ancestry h3").inner_text().startswith(f"Ancestry of {grandchild['id'][:8]}")
    )
    chain = [grandchild, child, parent]
    assert cells(page, "td.generation") == ["this model", "parent", "grandparent"]
    assert cells(page, "td.id") == [c["id"][:8] for c in chain]
    assert cells(page, "td.test-acc") == [pct(c["test_accuracy"]) for c in chain]
    assert cells(page, "td.lineage") == [
        finetuned_text(grandchild),
        finetuned_text(child),
        "trained from scratch",
    ]
    assert page.locator("#ancestry-summary").inner_text() == (
        f"{grandchild['id'][:8]} → {child['id'][:8]} → {parent['id'][:8]} "
        f"(3 models read; {parent['id'][:8]} was trained from scratch)"
    )
    page.locator("#ancestry").scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "browser-lineage.png", full_page=True)

    # the child's "ancestry" button: two steps, the child first
    row(page, child["id"]).locator("button.show-ancestry").click()
    page.wait_for_selector(f'#ancestry[data-model="{child["id"]}"][data-steps="2"]')
    assert cells(page, "td.id") == [child["id"][:8], parent["id"][:8]]
    assert cells(page, "td.lineage") == [finetuned_text(child), "trained from scratch"]

    # delete the parent (no alias points at it) from its row: the chain now ends there,
    # said so, and the child still names the parent it came from
    page.on("dialog", lambda dialog: dialog.accept())
    row(page, parent["id"]).locator("button.delete").click()
    page.wait_for_selector('#ancestry-table tbody tr[data-state="deleted"]')
    assert stack.http.get(f"/models/{parent['id']}").status_code == 404
    assert cells(page, "td.id") == [child["id"][:8], parent["id"][:8]]
    assert cells(page, "td.test-acc") == [pct(child["test_accuracy"]), "\u2013"]  # an en dash
    assert cells(page, "td.lineage") == [
        finetuned_text(child),
        "deleted: its card is gone, so the chain ends here",
    ]
    assert page.locator("#ancestry-summary").inner_text() == (
        f"{child['id'][:8]} → {parent['id'][:8]} (deleted) "
        f"(1 model read; {parent['id'][:8]} was deleted)"
    )
    assert row(page, parent["id"]).count() == 0
    assert row(page, child["id"]).locator("td.id").inner_text() == (
        f"{child['id'][:8]} ← {parent['id'][:8]}"
    )
    page.screenshot(path=ARTIFACTS / "browser-lineage-deleted.png", full_page=True)

    # close: the view goes away
    page.click("#ancestry-close")
    assert page.locator("#ancestry").is_hidden()
