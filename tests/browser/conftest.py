"""Real-browser tests of the admin: Playwright for Python drives Debian's Chromium against Django's live server.

Fixtures (every test in this folder is marked ``browser`` automatically; ``-m "not browser"`` leaves them out):

- ``browser``: one headless Chromium for the whole of tests/browser, from /usr/bin/chromium (``make browser``
  installs it; nothing runs ``playwright install``). A missing Chromium fails the tests, naming ``make browser``.
- ``page``: a fresh context and page for one test whose base URL is pytest-django's ``live_server``, so
  ``page.goto("/admin/")`` works. Asking for it brings a transactional database: the live server's thread
  must see the test's rows, so they are committed and the tables flushed afterwards.
- ``admin_login(username, password) -> Page``: logs in through the real ``/admin/login/`` form and returns
  the page, on the admin index.
- ``screenshot(page, name) -> Path``: a full-page PNG at ``var/screenshots/<test>/<name>.png`` (under
  ``VAR_DIR``, git-ignored, removed by ``make clean``). With ``SAVE_SCREENSHOTS=1`` it is also copied to
  ``docs/screenshots/<name>.png``, to refresh the pictures the docs show, so give those shots unique names.
  A failing test leaves ``var/screenshots/<test>/failure.png`` of its page.

Why ``DJANGO_ALLOW_ASYNC_UNSAFE``: while Playwright's sync API is started it keeps an asyncio loop running in
the main thread, and Django then refuses every ORM call from that thread (SynchronousOnlyOperation). The
variable is set only while this folder's Playwright runs and removed when the folder is done, so the rest
of the suite keeps Django's guard. The same reason keeps pytest-playwright out: its Playwright lives for the
whole session, which would leave that loop running under every later test.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Fixed so that screenshots compare across runs; one timeout, for actions and `expect` alike, so that a missing
# element fails in seconds.
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
CSP_MARK = "content security policy blocked"
CSP_REPORTER = (
    "document.addEventListener('securitypolicyviolation', (event) => console.error("
    f"'{CSP_MARK} ' + event.effectiveDirective + ': ' + (event.blockedURI || 'inline') + ' on ' + event.documentURI));"
)
TIMEOUT_MS = 10_000
DOCS_SCREENSHOTS = Path(settings.BASE_DIR) / "docs" / "screenshots"
HERE = Path(__file__).parent

AdminLogin = Callable[[str, str], Page]
Screenshot = Callable[[Page, str], Path]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so that ``page`` knows at teardown whether the test failed."""
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        expect.set_options(timeout=TIMEOUT_MS)
        with sync_playwright() as started:
            yield started


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium; run `make browser`", False)
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


def _test_dir(request: pytest.FixtureRequest) -> Path:
    return Path(settings.VAR_DIR) / "screenshots" / re.sub(r"[^\w.-]+", "_", request.node.name)


@pytest.fixture
def csp_blocked() -> list[str]:
    """What the content security policy blocked on this test's pages (a test that provokes a block clears it)."""
    return []


@pytest.fixture
def page(
    browser: Browser, live_server: LiveServer, request: pytest.FixtureRequest, csp_blocked: list[str]
) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    # Every page the browser tests open runs under the admin's content security policy: anything it blocks (an
    # inline script, a style, a frame) would break a page quietly, so it fails the test instead.
    context.add_init_script(CSP_REPORTER)
    opened = context.new_page()
    opened.on("console", lambda message: csp_blocked.append(message.text) if CSP_MARK in message.text else None)
    yield opened
    call = getattr(request.node, "_report_call", None)
    if call is not None and call.failed:
        path = _test_dir(request) / "failure.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        opened.screenshot(path=path, full_page=True)
    context.close()
    assert csp_blocked == [], f"the content security policy blocked: {csp_blocked}"


@pytest.fixture
def admin_login(page: Page) -> AdminLogin:
    def login(username: str, password: str) -> Page:
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("#login-form [type=submit]")
        # Either the admin index (its user tools) or the form again with Django's error note.
        outcome = page.locator("#user-tools, .errornote").first
        outcome.wait_for()
        if page.locator(".errornote").count():
            raise AssertionError(f"admin login as {username!r} failed: {page.locator('.errornote').inner_text()}")
        return page

    return login


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Screenshot:
    def take(page: Page, name: str) -> Path:
        path = _test_dir(request) / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=path, full_page=True)
        if os.environ.get("SAVE_SCREENSHOTS") == "1":
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
        return path

    return take
