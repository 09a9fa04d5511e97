"""One page of the MLflow web UI in a real browser: it opens UI routes, records what went wrong on
the wire and in the console, and saves screenshots.

A failure is a response with status >= 400, or a request that got no response at all (Chromium's
`requestfailed`, or no answer within `SETTLE_TIMEOUT_S`). A test compares the failures with an
allowlist of `Allowed` entries: requests the reference `mlflow server` fails in the same way.
Console errors are the page's `console.error` calls and uncaught exceptions; Chromium's own
"Failed to load resource" lines are left out, since the failed request itself is recorded with
its URL and body.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import ConsoleMessage, Error, Page, Request, Response

# What a test sets in localStorage before the UI's own scripts run. MLflow 3's UI opens in its
# GenAI workflow (trace views); the runs table, run pages and metric charts are the "Model
# training" workflow, the one a tracking server's users work in. The assistant panel and the
# registry's one-time promo dialog would cover the page (and the screenshots).
UI_SETTINGS = {
    "mlflow.workflowType_v1": '"machine_learning"',
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
    "mlflow.assistant.panelOpen_v1": "false",
    "_mlflow_model_registry_promo_modal_dismissed_v1": "true",
}
INIT_SCRIPT = "\n".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in UI_SETTINGS.items())

SETTLE_TIMEOUT_S = 15.0  # an API request still unanswered after this counts as failed
SETTLE_QUIET_S = 0.5  # no API request in flight for this long: the page is done for now
BODY_CHARS = 300  # of a failed response's body, in reports

# Where tests/ui/conftest.py finds the pages of a test (for the report of a failed one) and the
# session's screenshot directory.
UI_PAGES = pytest.StashKey[list["UiPage"]]()
SCREENSHOTS = pytest.StashKey[Path]()


@dataclass(frozen=True)
class Failure:
    method: str
    url: str
    status: int | None  # None: no response
    detail: str  # the response body (clipped), or why there was no response

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status or 'no response'}: {self.detail}"


@dataclass(frozen=True)
class Allowed:
    """A failed request that is not a defect: the reference server answers it the same way."""
    method: str
    path: str
    status: int
    reason: str

    def matches(self, failure: Failure) -> bool:
        return (failure.method, failure.path, failure.status) == (self.method, self.path, self.status)


@dataclass
class UiPage:
    """A browser page on `base_url`, recording failed requests and console errors from the start."""
    page: Page
    base_url: str
    screenshots: Path
    prefix: str  # of screenshot file names: which server the page shows
    failures: list[Failure] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    saved: list[Path] = field(default_factory=list)
    _in_flight: dict[Request, float] = field(default_factory=dict)
    _body_reads: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.page.on("request", self._on_request)
        self.page.on("requestfinished", self._on_done)
        self.page.on("requestfailed", self._on_failed)
        self.page.on("response", self._on_response)
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda exc: self.console_errors.append(f"uncaught: {exc}"))

    async def open(self, route: str) -> None:
        """Open a UI route (`#/experiments/1/runs`) and wait for the document to load."""
        await self.page.goto(f"{self.base_url}/{route}")

    async def screenshot(self, step: str) -> Path:
        path = self.screenshots / f"{self.prefix}-{step}.png"
        await self.page.screenshot(path=path)
        self.saved.append(path)
        print(f"screenshot: {path}")
        return path

    async def settle(self) -> None:
        """Wait until no API request has been in flight for a moment (bounded); requests still
        unanswered then are failures."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            await self.page.wait_for_timeout(100)  # lets the page's events arrive
            if self._in_flight:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= SETTLE_QUIET_S:
                break
        for request in list(self._in_flight):
            self.failures.append(Failure(request.method, request.url, None,
                                         f"no answer within {SETTLE_TIMEOUT_S:.0f}s"))
        self._in_flight.clear()
        if self._body_reads:
            await asyncio.gather(*self._body_reads, return_exceptions=True)

    def unexpected(self, allowed: list[Allowed]) -> list[str]:
        """Failed requests no allowlist entry covers, then console errors."""
        bad = [str(f) for f in self.failures if not any(a.matches(f) for a in allowed)]
        return bad + [f"console: {e}" for e in self.console_errors]

    def summary(self) -> str:
        lines = [f"page: {self.page.url}"]
        lines += [f"failed request: {f}" for f in self.failures] or ["failed requests: none"]
        lines += [f"console error: {e}" for e in self.console_errors] or ["console errors: none"]
        lines += [f"screenshot: {p}" for p in self.saved]
        return "\n".join(lines)

    # -- event handlers ------------------------------------------------------------------------

    def _on_request(self, request: Request) -> None:
        if request.resource_type in ("fetch", "xhr"):
            self._in_flight[request] = time.monotonic()

    def _on_done(self, request: Request) -> None:
        self._in_flight.pop(request, None)

    def _on_failed(self, request: Request) -> None:
        self._in_flight.pop(request, None)
        self.failures.append(Failure(request.method, request.url, None, request.failure or "failed"))

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            task = asyncio.ensure_future(self._record_failed_response(response))
            self._body_reads.add(task)
            task.add_done_callback(self._body_reads.discard)

    async def _record_failed_response(self, response: Response) -> None:
        try:
            body = (await response.text()).strip().replace("\n", " ")
        except Error as exc:  # the page moved on before the body was read
            body = f"(body not readable: {exc.message.splitlines()[0]})"
        if len(body) > BODY_CHARS:
            body = body[:BODY_CHARS] + "…"
        self.failures.append(Failure(response.request.method, response.url, response.status, body))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            where = message.location.get("url") or ""
            self.console_errors.append(f"{message.text} ({where})" if where else message.text)


def track(request: pytest.FixtureRequest, ui: UiPage) -> None:
    """Have `ui`'s record (failed requests, console errors, screenshots) in the report if the test fails."""
    request.node.stash.setdefault(UI_PAGES, []).append(ui)
