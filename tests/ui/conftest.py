"""Fixtures for the web UI's browser tests: one headless Chromium for the whole session (Debian's
`chromium`, which `scripts/services.sh install` installs; Playwright drives it, no browser
download), screenshots kept in pytest's tmp dir, and for a failed test the page's failed requests
and console errors in the report."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.ui.browser import SCREENSHOTS, UI_PAGES

CHROMIUM = Path(os.environ.get("GENESIS_FLOW_CHROMIUM", "/usr/bin/chromium"))
# Locator assertions wait up to this long: the first page of a context loads a 4 MB bundle, and the
# distributed stack answers through nginx on a two-core machine.
EXPECT_TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"no browser at {CHROMIUM}: `bash scripts/services.sh install` installs Debian's chromium "
                    "(GENESIS_FLOW_CHROMIUM names another one)")
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    async with async_playwright() as pw:
        # Chromium's sandbox refuses to run as root (CI containers); headless needs nothing else.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        yield browser
        await browser.close()


@pytest.fixture(scope="session")
def screenshot_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ui-screenshots", numbered=False)
    request.config.stash[SCREENSHOTS] = path
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for ui in item.stash.get(UI_PAGES, []):
            report.sections.append((f"browser ({ui.prefix})", ui.summary()))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    path = config.stash.get(SCREENSHOTS, None)
    if path is not None:
        terminalreporter.write_line(f"UI screenshots: {path}")
