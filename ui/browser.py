"""Drive the app in headless Chromium (Playwright): shared by ``bench ui`` and the browser tests."""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browser_unavailable() -> str | None:
    """Why a browser run cannot happen here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if chromium_path() is None:
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(demo: Any, auth: tuple[str, str] | None = None) -> Iterator[str]:
    """Launch ``demo`` in this process on a free local port; yields its URL."""
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, auth=auth,
                max_file_size="512mb")
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class LabelPage:
    """The Label screen of one browser page."""

    def __init__(self, page: Any, url: str, timeout_ms: int = 30000) -> None:
        self.page = page
        self.timeout = timeout_ms
        page.goto(url)
        page.get_by_role("tab", name="Label").click()
        page.wait_for_function("() => document.querySelector('#ds-label .ds-label')?.dataset.imageId",
                               timeout=timeout_ms)

    @property
    def root(self) -> Any:
        return self.page.locator("#ds-label")

    def data(self, key: str) -> str:
        return self.page.evaluate(f"() => document.querySelector('#ds-label .ds-label').dataset.{key} || ''")

    def open(self, image_id: int) -> None:
        self.page.evaluate(f"() => window.__ds.open({int(image_id)})")
        self.page.wait_for_function(
            f"() => document.querySelector('#ds-label .ds-label').dataset.imageId === '{int(image_id)}'",
            timeout=self.timeout)

    def to_page(self, x: float, y: float) -> tuple[float, float]:
        return tuple(self.page.evaluate(f"() => window.__ds.toPage({float(x)}, {float(y)})"))

    def click(self, x: float, y: float, button: str = "left") -> dict:
        """Click at image pixel (x, y); waits for the overlay and returns the page's own timing."""
        before = len(self.metrics())
        px, py = self.to_page(x, y)
        self.page.mouse.click(px, py, button=button)
        self.page.wait_for_function(f"() => window.__ds.metrics.length > {before}", timeout=self.timeout)
        return self.metrics()[-1]

    def drag(self, x0: float, y0: float, x1: float, y1: float) -> dict:
        before = len(self.metrics())
        a, b = self.to_page(x0, y0), self.to_page(x1, y1)
        self.page.mouse.move(*a)
        self.page.mouse.down()
        self.page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=3)
        self.page.mouse.move(*b, steps=3)
        self.page.mouse.up()
        self.page.wait_for_function(f"() => window.__ds.metrics.length > {before}", timeout=self.timeout)
        return self.metrics()[-1]

    def metrics(self) -> list[dict]:
        return self.page.evaluate("() => window.__ds.metrics")

    def idle(self) -> None:
        """Wait until queued calls of the page are done."""
        self.page.evaluate("() => window.__ds.state.chain")

    def status(self) -> str:
        return self.page.locator("#ds-label .ds-status").inner_text()
