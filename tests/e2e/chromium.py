"""Real headless Chromium for the page's tests: Debian's ``chromium``, driven by
Playwright (no browser download). Importing this module skips the importing test module
where Playwright or Chromium is missing, and fails instead under ``CI=true`` (.ci/run
installs both: a skip there would hide a gap).

A test module takes the fixtures by name (``browser = chromium.browser``): one browser
per module, and a fresh page per test that fails the test on any JavaScript error and
leaves a full-page screenshot in ``test-artifacts/``.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import REPO

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
TIMEOUT_MS = 30_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
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
    # what went wrong on the wire and in the console: printed at teardown, so a failing
    # test's report carries it (CI keeps no screenshot)
    seen: list[str] = []
    page.on("requestfailed", lambda r: seen.append(f"failed {r.method} {r.url}: {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and seen.append(f"{r.status} {r.url}"))
    page.on("console", lambda m: m.type == "error" and seen.append(f"console: {m.text}"))
    yield page
    print("\n".join(["the page saw:", *seen]) if seen else "the page saw no failure")
    page.screenshot(path=ARTIFACTS / f"browser-{request.node.name}.png", full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
