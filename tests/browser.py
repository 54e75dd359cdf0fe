"""Answering approval forms in the Prefect UI with headless Chromium, as a person does.

Debian's `chromium` is driven by Playwright (Playwright's own browser download does not work
here). `open_form()` opens a suspended run's page in a fresh browser, presses Resume and gives
the form; its methods fill fields by their label and submit.

Without Chromium the browser tests are skipped on a developer's machine and fail under CI=true,
where .ci/run installs it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from uuid import UUID

import pytest
from playwright.sync_api import Locator, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from prefect import get_client

PROPERTY = ".schema-form-property"
FAILED = ".p-label__message--failed"


def _answer(response) -> str:
    try:
        return f"{response.status} {response.text()[:300]}"
    except Exception as exc:  # the body may be gone; the status is still worth reporting
        return f"{response.status} ({exc})"


def require_chromium() -> str:
    """Chromium's path; skips the test (fails it under CI=true) when the browser is not installed."""
    path = shutil.which("chromium")
    if path is None:
        message = "Chromium is not installed (apt-get install chromium); the browser tests need it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class Form:
    """The Resume dialog of a suspended run: fields found by their label, as a person reads them."""

    def __init__(self, page: Page):
        self.page = page
        self.dialog = page.get_by_role("dialog")
        # The API calls the page made and their responses (None: none yet), for a failure's message.
        self.calls: dict = {}
        page.on("request", lambda r: self.calls.setdefault(r, None) if "/api/" in r.url else None)
        page.on("response", lambda r: self.calls.__setitem__(r.request, r) if "/api/" in r.url else None)

    @property
    def description(self) -> str:
        return self.dialog.locator("article").first.inner_text()

    def labels(self) -> list[str]:
        return self.dialog.locator(f"{PROPERTY}__label").all_inner_texts()

    def field(self, label: str) -> Locator:
        """The form property labelled `label` (optional fields carry an " (Optional)" suffix)."""
        name = re.compile(rf"^\s*{re.escape(label)}( \(Optional\))?\s*$")
        found = self.dialog.locator(PROPERTY).filter(
            has=self.page.locator(f"{PROPERTY}__label", has_text=name))
        if found.count() != 1:
            raise AssertionError(f"no single field labelled {label!r} in the form; labels: {self.labels()}")
        return found

    def choose(self, label: str, option: str) -> Form:
        """Pick `option` from a choice list: focus it, open it with ArrowDown, click the option's text."""
        control = self.field(label).locator(".p-select-button__control")
        control.focus()
        self.page.keyboard.press("ArrowDown")
        self.page.locator(".p-select-option").filter(has_text=re.compile(rf"^\s*{re.escape(option)}\s*$")).click()
        assert control.inner_text().strip() == option, f"{label} shows {control.inner_text()!r}, not {option!r}"
        return self

    def fill(self, label: str, text: str) -> Form:
        """Type into a text field (textarea or input) and leave it, so the form takes the value."""
        box = self.field(label).locator("textarea, input").first
        box.fill(text)
        box.press("Tab")
        return self

    def add_item(self, label: str, value: str) -> Form:
        """Add an entry to a list field ("Add item", then type into the new entry's box)."""
        field = self.field(label)
        field.get_by_role("button", name="Add item").click()
        box = field.locator(".schema-form-property-array-item").last.locator("input, textarea").first
        box.fill(value)
        box.press("Tab")
        return self

    def submit(self, timeout: float = 60) -> list[str]:
        """Press Submit; [] once the dialog closed (the answer was sent), else the errors it shows."""
        before = len(self.calls)
        self.dialog.get_by_role("button", name="Submit").click()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.dialog.count():
                return []
            errors = [e.strip() for e in self.dialog.locator(FAILED).all_inner_texts() if e.strip()]
            if errors:
                return errors
            self.page.wait_for_timeout(200)
        calls = [f"{r.method} {r.url.split('/api/', 1)[-1]} -> " + (_answer(response) if response else "no answer")
                 for r, response in list(self.calls.items())[before:]
                 if r.method != "GET" and ("flow_runs/" in r.url or "schemas" in r.url)]
        raise AssertionError(f"the form neither closed nor showed an error within {timeout} s; "
                             f"calls after Submit: {calls}")

    def screenshot(self, path) -> None:
        self.page.screenshot(path=str(path), full_page=True)


@contextlib.contextmanager
def open_form(prefect_url: str, flow_run_id: UUID, timeout: float = 60) -> Iterator[Form]:
    """Open the run's page in the Prefect UI in a fresh headless Chromium and press Resume.

    Inside the block Playwright's event loop counts as running in this thread, so Prefect's
    functions that are both sync and async (run_deployment, ...) hand back coroutines there:
    call them outside it. get_client(sync_client=True) works inside.
    """
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=require_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(timeout * 1000)
            page.goto(f"{prefect_url}/runs/flow-run/{flow_run_id}")
            page.get_by_role("button", name="Resume", exact=True).click()
            try:
                page.get_by_role("dialog").locator(PROPERTY).first.wait_for()
            except PlaywrightTimeout:
                raise AssertionError(f"the Resume dialog of run {flow_run_id} showed no form") from None
            yield Form(page)
        finally:
            browser.close()


def wait_until_finished(flow_run_id: UUID, timeout: float = 120):
    """The run's final state, once the answered form's run has run again to its end."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_final():
                return state
            time.sleep(0.5)
    raise AssertionError(f"run {flow_run_id} did not finish within {timeout:.0f} s (last state {state.name})")
