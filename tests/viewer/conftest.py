"""Fixtures for the viewer's browser tests: Debian's chromium, driven by Playwright.

The browser tests run on one interpreter only (Python 3.11, what CI's first-class run uses), since
the page does not depend on the Python version and each browser run costs seconds; set
``CODEGURU_AGENT_BROWSER_TESTS=1`` to run them on another interpreter, ``0`` to skip them.
Playwright's own browser download is not used: the tests launch ``/usr/bin/chromium``, which
``.ci/run`` installs when it is missing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator, List, Optional

import pytest

CHROMIUM = "/usr/bin/chromium"
BROWSER_PYTHON = (3, 11)


def browser_skip_reason() -> Optional[str]:
    """Why the browser tests cannot or should not run here, or None."""
    wanted = os.environ.get("CODEGURU_AGENT_BROWSER_TESTS")
    if wanted == "0":
        return "CODEGURU_AGENT_BROWSER_TESTS=0"
    if wanted != "1" and sys.version_info[:2] != BROWSER_PYTHON:
        return "the browser tests run on Python 3.11 only (CODEGURU_AGENT_BROWSER_TESTS=1 runs them here)"
    if not os.path.exists(CHROMIUM):
        return f"no {CHROMIUM}: install Debian's chromium (apt-get install chromium; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless chromium for the whole session (starting one costs about a second)."""
    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


class Tab:
    """A browser page, with what a person would read and do on it, and the script errors it raised."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: List[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # The browser asks every server for /favicon.ico on its own; the collector has none.
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            self.errors.append(message.text)

    def open_html(self, html: str, tmp_path: Path, name: str = "page.html") -> None:
        """Write ``html`` to a file and open it from there, as a user opens a written page."""
        path = tmp_path / name
        path.write_text(html, encoding="utf-8")
        self.page.goto(path.as_uri())

    def locate(self, frame: str) -> Optional[dict]:
        """Where the shown graph draws ``frame``: ``{x, y, width}`` in page pixels, or None."""
        found: Optional[dict] = self.page.evaluate("(name) => window.profileViewer.locate(name)", frame)
        return found

    def click_frame(self, frame: str) -> None:
        box = self.locate(frame)
        assert box is not None, f"{frame} is not drawn"
        self.page.mouse.click(box["x"], box["y"])

    def hover_frame(self, frame: str) -> None:
        box = self.locate(frame)
        assert box is not None, f"{frame} is not drawn"
        self.page.mouse.move(box["x"], box["y"])

    def text(self, selector: str) -> str:
        return str(self.page.inner_text(selector))

    def visible(self, selector: str) -> bool:
        return bool(self.page.is_visible(selector))

    def colour_at(self, x: float, y: float) -> List[int]:
        """The average colour of the 5×5 pixels around a point of the shown canvas (hatching included)."""
        return list(
            self.page.evaluate(
                """([x, y]) => {
                    const canvas = [...document.querySelectorAll("canvas")].find((c) => c.offsetParent !== null);
                    const rect = canvas.getBoundingClientRect(), ratio = canvas.width / rect.width;
                    const data = canvas.getContext("2d").getImageData(
                        Math.round((x - rect.left) * ratio) - 2, Math.round((y - rect.top) * ratio) - 2, 5, 5).data;
                    const sum = [0, 0, 0];
                    for (let k = 0; k < data.length; k += 4) {
                        sum[0] += data[k]; sum[1] += data[k + 1]; sum[2] += data[k + 2];
                    }
                    return sum.map((v) => Math.round(v / 25));
                }""",
                [x, y],
            )
        )


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    """A fresh page at a desktop size; the test fails if the page raised a script error."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    opened = Tab(context.new_page())
    try:
        yield opened
    finally:
        context.close()
    assert opened.errors == [], "the page raised script errors"
