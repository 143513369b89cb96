"""Debian's Chromium driven by Playwright: no browser download, the same flags everywhere."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# Headless, no sandbox (CI runs as root), and nothing that reaches out to the network.
_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
)


# Pages report what their Content-Security-Policy refused as a DOM event too; with
# JavaScript on, it is logged under this mark (with JavaScript off the browser's own
# console message, which names the policy, is still caught).
_CSP_MARK = "CSP violation:"
_CSP_LISTENER = (
    "document.addEventListener('securitypolicyviolation', (e) => console.error("
    f"'{_CSP_MARK} ' + e.effectiveDirective + ' refused ' + (e.blockedURI || 'inline') + "
    "' at ' + e.documentURI + (e.lineNumber ? ':' + e.lineNumber : '')));"
)


class CspWatchedBrowser:
    """A Browser whose every context and page reports Content-Security-Policy violations.

    Every browser test goes through `chromium()`, so each one checks that the pages it
    visits run under the hub's policy without the browser refusing anything: an inline
    script, a style attribute or a media URL the policy does not allow fails the test.
    """

    def __init__(self, browser: Any) -> None:
        self._browser = browser
        self.csp_violations: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)

    def new_context(self, **kwargs: Any) -> Any:
        context = self._browser.new_context(**kwargs)
        self.watch(context)
        return context

    def new_page(self, **kwargs: Any) -> Any:
        # A context of its own, as Browser.new_page makes; it is closed with the browser.
        return self.new_context(**kwargs).new_page()

    def watch(self, context: Any) -> None:
        context.add_init_script(_CSP_LISTENER)
        context.on("page", self._watch_page)
        for page in context.pages:
            self._watch_page(page)

    def _watch_page(self, page: Any) -> None:
        def on_console(message: Any) -> None:
            text = message.text
            if text.startswith(_CSP_MARK) or "Content Security Policy" in text:
                self.csp_violations.append(f"{page.url}: {text}")

        page.on("console", on_console)

    def assert_no_csp_violations(self) -> None:
        """Fail with what was refused since the last check, and start afresh."""
        found, self.csp_violations = self.csp_violations, []
        assert not found, "the Content-Security-Policy refused:\n" + "\n".join(found)


@contextmanager
def chromium(*extra_flags: str) -> Iterator[Any]:
    """A launched browser (Playwright's Browser, watched for CSP violations), closed afterwards.

    Violations not checked by the test itself fail it when the block ends.
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = CspWatchedBrowser(playwright.chromium.launch(executable_path=CHROMIUM, args=[*_FLAGS, *extra_flags]))
        try:
            yield browser
        finally:
            browser.close()
        browser.assert_no_csp_violations()


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def read_as_a_chinese_reader(page: Any, name: str) -> None:
    """No English word on the page, nothing wider than the phone; a screenshot (test-artifacts/NAME.png) for a person.

    Shared by the Chinese phone journeys (the uploader's, the textbook browser's).
    """
    from tests.support.chinese import english_words

    page.wait_for_load_state()
    assert english_words(page.content()) == [], f"{name}: {page.url}"
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{name}: {overflow}px wider than the screen"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
