"""The page's Sweeps section in real headless Chromium against the real service with two
workers: a 4-trial sweep started from the form, its live trial table (sorted by a
click), its plots, "promote best" and the serving line. Asserts what a person sees."""

from collections.abc import Iterator

import pytest

from tests.e2e import chromium
from tests.e2e.chromium import ARTIFACTS, sync_api
from tests.e2e.conftest import Stack, two_worker_stack
from tests.e2e.test_sweeps import SETTINGS

browser = chromium.browser
page = chromium.page

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The API, two workers (one BLAS thread each), a private Redis."""
    with two_worker_stack(tmp_path_factory.mktemp("browser-sweeps"), **SETTINGS) as stack:
        yield stack


def shown_values(page: "sync_api.Page") -> list[str]:
    return page.locator("#trials tbody td.value").all_inner_texts()


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def sweep_form(page: "sync_api.Page", stack: Stack, epochs: int) -> "sync_api.Locator":
    """The page, its sweep form's base open with small trials of ``epochs`` epochs; the
    base's fields."""
    page.goto(stack.url + "/")
    page.wait_for_selector('#sweep-space tbody tr[data-field="eta"]')
    page.locator("#sweep-base-box summary").click()
    base = page.locator("#sweep-base")
    base.locator('input[name="epochs"]').fill(str(epochs))
    base.locator('input[name="train_size"]').fill("2000")
    base.locator('input[name="minibatches"]').fill("20")
    return base


def sweep_state_is(page: "sync_api.Page", state: str, timeout: float) -> None:
    page.wait_for_function(
        "(s) => document.querySelector('#sweep-state').textContent === s",
        arg=state,
        timeout=timeout,
    )


def test_a_sweep_from_the_page_to_promote_best(page: "sync_api.Page", stack: Stack) -> None:
    # tiny trials: the fast preset's base, three values changed
    base = sweep_form(page, stack, epochs=3)
    # eta (log) and n_hidden are searched by default; narrow n_hidden
    hidden = page.locator('#sweep-space tr[data-field="n_hidden"]')
    assert hidden.locator('input[name="on"]').is_checked()
    assert page.locator('#sweep-space tr[data-field="eta"] input[name="log"]').is_checked()
    assert base.locator('input[name="eta"]').is_disabled()  # searched: not a base value
    hidden.locator('input[name="low"]').fill("10")
    hidden.locator('input[name="high"]').fill("60")
    form = page.locator("#sweep-form")
    form.locator('input[name="trials"]').fill("4")
    form.locator('input[name="parallel"]').fill("2")
    form.locator('select[name="sampler"]').select_option("random")
    form.locator('input[name="sampler_seed"]').fill("3")
    page.locator("#sweep-button").click()

    page.wait_for_function("() => document.querySelectorAll('#trials tbody tr').length === 4",
                           timeout=120_000)  # fmt: skip
    sweep_state_is(page, "succeeded", timeout=120_000)
    sweep_id = page.locator("#sweep-id").get_attribute("title")
    record = stack.http.get(f"/sweeps/{sweep_id}").json()
    assert record["status"] == "succeeded" and len(record["trials"]) == 4
    assert record["base"]["epochs"] == 3 and record["base"]["minibatches"] == 20
    assert record["request"]["space"]["eta"]["log"] is True
    listed = page.locator(f'#sweeps tbody tr[data-id="{sweep_id}"]')
    # the list refreshes every 3 s: it reads "succeeded" at its next refresh at the latest
    page.wait_for_function(
        """id => {
          const row = document.querySelector(`#sweeps tbody tr[data-id="${id}"]`);
          return row !== null && row.cells[1].textContent === "succeeded";
        }""",
        arg=sweep_id,
        timeout=15_000,
    )
    assert listed.locator("td").nth(1).inner_text() == "succeeded"
    assert listed.locator("td").nth(2).inner_text() == "4/4"
    # by trial number at first; a click on "val acc" sorts ascending, another descending
    assert page.locator("#trials tbody tr").evaluate_all(
        "rows => rows.map(r => r.cells[0].textContent)"
    ) == ["0", "1", "2", "3"]
    values = [t["value"] for t in record["trials"]]
    page.locator('#trials th[data-key="value"]').click()
    assert shown_values(page) == [percent(v) for v in sorted(values)]
    page.locator('#trials th[data-key="value"]').click()
    assert shown_values(page) == [percent(v) for v in sorted(values, reverse=True)]
    assert page.locator('#trials th[data-key="value"]').get_attribute("aria-sort") == "descending"
    best = record["best"]
    assert page.locator("#trials tbody tr.best").get_attribute("data-number") == str(best["number"])

    # the plots: a point per trial against each parameter, best so far, four curves
    for name in ("eta", "n_hidden"):
        assert page.locator(f'svg[data-plot="param-{name}"] circle').count() == 4
    assert "log scale" in page.locator('svg[data-plot="param-eta"]').inner_html()
    finished = len(record["trials"])  # trial 0 completes (no pruning before 2 have)
    assert page.locator('svg[data-plot="best"] circle').count() == finished
    page.wait_for_function(
        "() => document.querySelectorAll('svg[data-plot=\"curves\"] polyline.curve').length === 4"
    )
    pruned = [t for t in record["trials"] if t["state"] == "pruned"]
    assert page.locator('svg[data-plot="curves"] polyline.curve.pruned').count() == len(pruned)

    # promote best: the serving line names the best trial's model
    assert page.locator("#promote-alias").input_value() == "production"
    page.locator("#promote-best").click()
    expected = f"Serving: production → {best['model_id'][:8]}"
    page.wait_for_function(
        "(text) => document.querySelector('#serving').textContent === text", arg=expected
    )
    assert stack.http.get("/aliases/production").json()["model_id"] == best["model_id"]
    assert (
        page.locator("#sweep-action")
        .inner_text()
        .startswith(f"production → model {best['model_id'][:8]} (trial #{best['number']})")
    )
    assert page.locator("#cancel-sweep").is_hidden()  # an ended sweep has nothing to cancel
    page.locator("#sweeps-section").screenshot(path=ARTIFACTS / "browser-sweeps.png")


def test_cancel_from_the_page(page: "sync_api.Page", stack: Stack) -> None:
    sweep_form(page, stack, epochs=3000)
    page.locator('#sweep-form input[name="trials"]').fill("3")
    page.locator("#sweep-button").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#trials tbody tr')]"
        ".some(r => r.dataset.state === 'running')",
        timeout=60_000,
    )
    page.locator("#cancel-sweep").click()
    page.wait_for_function(
        "() => document.querySelector('#sweep-action').textContent.includes('cancelling')"
    )
    sweep_state_is(page, "cancelled", timeout=60_000)
    states = page.locator("#trials tbody tr").evaluate_all("rows => rows.map(r => r.dataset.state)")
    assert states and set(states) == {"cancelled"}
