"""Headless Chromium for the web view's tests (tests/test_web_browser.py,
mininet_tests/test_web.py).

Playwright drives Debian's `chromium` (scripts/setup.sh installs it), not a browser Playwright
downloads. A test skips, saying why, only when no browser can be started at all.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    """The browser to drive: $DYNCAST_CHROMIUM, else the first of CANDIDATES on PATH."""
    wanted = os.environ.get("DYNCAST_CHROMIUM")
    if wanted:
        return wanted
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@contextmanager
def browser() -> Iterator[Any]:
    """A started headless Chromium (skips the test, saying why, if none can start)."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is not installed ({exc}); see requirements/pinned.txt")
    path = chromium_path()
    if path is None:
        pytest.skip(f"no Chromium found (tried {', '.join(CANDIDATES)}; apt-get install chromium)")
    with sync_playwright() as pw:
        try:
            # --no-sandbox: the tests run as root (Mininet), where Chromium's sandbox refuses
            started = pw.chromium.launch(executable_path=path, headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
        except Error as exc:
            pytest.skip(f"Chromium at {path} could not be started: {str(exc)[:300]}")
        try:
            yield started
        finally:
            started.close()


class Console:
    """Collects a page's console errors and uncaught exceptions (a test fails on any)."""

    def __init__(self, page: Any, allowed: tuple[str, ...] = ()) -> None:
        self.errors: list[str] = []
        self.allowed = allowed
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and not any(a in msg.text for a in self.allowed):
            self.errors.append(f"console: {msg.text}")
