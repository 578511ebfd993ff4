"""The system Chromium (Debian's `chromium`), driven by Playwright for Python.

Playwright's own browser download is never used (`PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1`, no
`playwright install`): the fixture launches `/usr/bin/chromium` through `executable_path`, with
every background network feature off, since the machine's network is closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.services import missing

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """A headless Chromium `Browser`; tests open their own contexts and pages."""
    if not CHROMIUM.exists():
        missing("Chromium", f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        missing("Chromium", "the playwright package is not installed")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=FLAGS
            )
        except Error as exc:
            missing("Chromium", f"it did not start: {exc}")
        yield browser
        browser.close()
