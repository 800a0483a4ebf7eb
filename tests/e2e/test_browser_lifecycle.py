"""The page's model lifecycle in real headless Chromium against the real service: what
serves (the line above the pad), promoting through an alias, the badges, rollback and
the alias's history, deleting (refused while aliased, with the API's reason), and the
npz and ONNX downloads. Asserts what a person sees."""

import re

import pytest

from tests.e2e import chromium
from tests.e2e.chromium import ARTIFACTS, sync_api
from tests.e2e.conftest import TINY, Stack
from tests.e2e.test_browser import draw_seven

# one Chromium per module, a page per test that fails on a JavaScript error (chromium.py)
browser = chromium.browser
page = chromium.page

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two_models(stack: Stack) -> tuple[str, str]:
    """Two tiny models, (older, newer); this module's stack has no other model."""
    for job_id in [stack.submit(**TINY), stack.submit(**TINY)]:
        job = stack.wait(job_id)
        assert job["status"] == "succeeded", job
    items = stack.http.get("/models").json()["items"]
    assert len(items) == 2, items
    newer, older = (m["id"] for m in items)  # newest first
    return older, newer


def serving_line(page: "sync_api.Page", text: str) -> None:
    """Wait until the line above the pad says exactly ``text``."""
    page.wait_for_function(
        "(text) => document.querySelector('#serving').textContent === text", arg=text
    )


def row(page: "sync_api.Page", model_id: str) -> "sync_api.Locator":
    return page.locator(f'#models tbody tr[data-id="{model_id}"]')


def badges(page: "sync_api.Page", model_id: str) -> list[str]:
    return row(page, model_id).locator(".badge").all_inner_texts()


def promote(page: "sync_api.Page", model_id: str, alias: str | None, reason: str = "") -> None:
    """Through the row's "promote…" form; ``alias=None`` keeps the suggested name."""
    row(page, model_id).locator("button.promote").click()
    form = page.locator(f'#models tr.promote-row[data-for="{model_id}"] form')
    if alias is not None:
        form.locator('input[name="alias"]').fill(alias)
    if reason:
        form.locator('input[name="reason"]').fill(reason)
    form.locator('button[type="submit"]').click()


def status_says(page: "sync_api.Page", pattern: str) -> str:
    """The models' status line once it matches ``pattern`` (a regular expression)."""
    page.wait_for_function(
        "(p) => new RegExp(p).test(document.querySelector('#models-status').textContent)",
        arg=pattern,
    )
    return page.locator("#models-status").inner_text()


class Dialogs:
    """Confirmation dialogs: their messages, and the answers to give (accept by default)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.dismiss_next = False

    def __call__(self, dialog: "sync_api.Dialog") -> None:
        self.messages.append(dialog.message)
        if self.dismiss_next:
            self.dismiss_next = False
            dialog.dismiss()
        else:
            dialog.accept()


@pytest.fixture
def dialogs(page: "sync_api.Page") -> Dialogs:
    answer = Dialogs()
    page.on("dialog", answer)
    return answer


def test_download_links_point_at_the_endpoints(
    page: "sync_api.Page", stack: Stack, two_models: tuple[str, str]
) -> None:
    older, _ = two_models
    page.goto(stack.url + "/")
    npz = row(page, older).locator("a.npz")
    onnx = row(page, older).locator("a.onnx")
    assert npz.get_attribute("href") == f"/models/{older}/download"
    assert onnx.get_attribute("href") == f"/models/{older}/onnx"
    assert npz.inner_text() == "npz" and onnx.inner_text() == "ONNX"
    card = stack.http.get(f"/models/{older}").json()
    expected_onnx = len(stack.http.get(f"/models/{older}/onnx").content)
    fetched = page.evaluate(
        """async (hrefs) => Promise.all(hrefs.map(async (href) => {
            const r = await fetch(href);
            return [r.status, (await r.arrayBuffer()).byteLength];
        }))""",
        [npz.get_attribute("href"), onnx.get_attribute("href")],
    )
    assert fetched == [[200, card["size_bytes"]], [200, expected_onnx]]
    assert expected_onnx > 100_000  # 784x100 float32 weights, at least


def test_promote_rollback_and_delete_from_the_page(
    page: "sync_api.Page", stack: Stack, two_models: tuple[str, str], dialogs: Dialogs
) -> None:
    older, newer = two_models
    page.goto(stack.url + "/")
    # no alias yet: the newest model serves
    serving_line(page, f"Serving: newest model {newer[:8]} (no production alias yet)")
    row(page, older).wait_for()
    assert page.locator("#aliases-empty").is_visible()
    assert not page.locator("#aliases").is_visible()  # no empty table
    assert badges(page, older) == [] and badges(page, newer) == []

    # promote the older model; the form suggests "production"
    row(page, older).locator("button.promote").click()
    form = page.locator(f'#models tr.promote-row[data-for="{older}"] form')
    assert form.locator('input[name="alias"]').input_value() == "production"
    form.locator('input[name="reason"]').fill("first pick")
    form.locator('button[type="submit"]').click()
    serving_line(page, f"Serving: production → {older[:8]}")
    assert status_says(page, "production →") == f"production → {older[:8]}"
    page.wait_for_selector(f'#models tbody tr[data-id="{older}"] .badge[data-alias="production"]')
    assert badges(page, older) == ["production"] and badges(page, newer) == []
    assert page.locator("#models tr.promote-row").count() == 0  # the form closed

    # a drawing is answered by the production model, and the page says so
    page.locator("#pad").scroll_into_view_if_needed()  # the clicks above scrolled down
    draw_seven(page)
    page.wait_for_selector('#label[data-for]:not([data-for=""])')
    assert page.locator("#predict-status").inner_text() == f"model {older[:8]} via production"

    # promote the newer one, and the older one to a new alias typed in
    promote(page, newer, None, reason="better?")
    serving_line(page, f"Serving: production → {newer[:8]}")
    page.wait_for_selector(f'#models tbody tr[data-id="{newer}"] .badge[data-alias="production"]')
    promote(page, older, "challenger")
    page.wait_for_selector(f'#models tbody tr[data-id="{older}"] .badge[data-alias="challenger"]')
    assert badges(page, older) == ["challenger"] and badges(page, newer) == ["production"]
    assert page.eval_on_selector_all(
        "#aliases tbody tr", "(rows) => rows.map((r) => r.dataset.alias)"
    ) == ["challenger", "production"]

    # a bad alias name: the API's 422, as text
    promote(page, newer, "Not Valid")
    refused = status_says(page, "promote to Not Valid")
    assert "name" in refused and "pattern" in refused, refused
    assert page.locator("#models-status.error").is_visible()
    assert badges(page, newer) == ["production"]
    page.locator(f'#models tr.promote-row[data-for="{newer}"] button:text("cancel")').click()

    # roll production back: the older model serves again, and the history says so
    page.locator('#aliases tbody tr[data-alias="production"] button.rollback').click()
    serving_line(page, f"Serving: production → {older[:8]}")
    assert status_says(page, "rolled back") == f"production rolled back to {older[:8]}"
    page.wait_for_selector('#alias-history[data-alias="production"] tr[data-source="rollback"]')
    history = [
        [cell.strip() for cell in r.split("\t")]
        for r in page.locator("#history tbody tr").all_inner_texts()
    ]
    assert [h[1:4] for h in history] == [
        [older[:8], newer[:8], "rollback"],
        [newer[:8], older[:8], "api"],
        [older[:8], "\u2013", "api"],
    ], history
    assert history[1][4] == "better?" and history[2][4] == "first pick"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", history[0][0]), history
    assert badges(page, older) == ["challenger", "production"] and badges(page, newer) == []

    # challenger never changed: no earlier target, the 409's detail is shown
    page.locator('#aliases tbody tr[data-alias="challenger"] button.rollback').click()
    assert "409" in status_says(page, "challenger has no earlier target")

    # deleting the aliased model: confirmed, then refused with the API's reason
    row(page, older).locator("button.delete").click()
    detail = status_says(page, "^delete .*: 409 ")
    assert f"model {older} is served by alias(es) challenger, production" in detail, detail
    assert dialogs.messages[-1].startswith(f"Delete model {older[:8]}?"), dialogs.messages
    assert "Aliases point at it: challenger, production" in dialogs.messages[-1]
    assert row(page, older).count() == 1
    # the picture: the serving line, the badges, the refusal, production's history
    page.locator('#aliases tbody tr[data-alias="production"] button.history').click()
    page.wait_for_selector('#alias-history[data-alias="production"] tr[data-source="rollback"]')
    assert page.locator("#history tbody tr").count() == 3
    page.screenshot(path=ARTIFACTS / "browser-lifecycle.png", full_page=True)

    # deleting the unaliased one: a dismissed confirmation keeps it, a confirmed one removes it
    asked = len(dialogs.messages)
    dialogs.dismiss_next = True
    row(page, newer).locator("button.delete").click()
    assert len(dialogs.messages) == asked + 1 and not dialogs.dismiss_next
    assert row(page, newer).count() == 1 and "409" in page.locator("#models-status").inner_text()
    assert stack.http.get(f"/models/{newer}").status_code == 200
    row(page, newer).locator("button.delete").click()
    assert status_says(page, "deleted") == f"model {newer[:8]} deleted"
    row(page, newer).wait_for(state="detached")
    assert stack.http.get(f"/models/{newer}").status_code == 404
    assert page.locator("#models tbody tr").count() == 1
    serving_line(page, f"Serving: production → {older[:8]}")
    page.screenshot(path=ARTIFACTS / "browser-lifecycle-after-delete.png", full_page=True)


def test_a_broken_production_model_shows_degraded(
    page: "sync_api.Page", stack: Stack, two_models: tuple[str, str]
) -> None:
    broken = stack.trained(**TINY)["id"]
    response = stack.http.put("/aliases/production", json={"model_id": broken})
    assert response.status_code == 200, response.text
    intact = [m["id"] for m in stack.http.get("/models").json()["items"] if m["id"] != broken]
    page.goto(stack.url + "/")
    serving_line(page, f"Serving: production → {broken[:8]}")
    # its file rots on disk; the next default prediction finds out and falls back
    (stack.model_dir / f"{broken}.npz").write_bytes(b"rotten")
    draw_seven(page)
    page.wait_for_selector('#label[data-for]:not([data-for=""])')
    assert page.locator("#predict-status").inner_text() == f"model {intact[0][:8]}"
    serving_line(
        page,
        f"degraded: fell back to model {intact[0][:8]}, the newest intact one "
        "(production's model is unusable)",
    )
    assert page.locator("#serving").get_attribute("data-status") == "degraded"
    page.wait_for_selector(f'#models tbody tr[data-id="{broken}"] .badge.broken')
    assert badges(page, broken) == ["production", "broken"]
    page.screenshot(path=ARTIFACTS / "browser-lifecycle-degraded.png")
