"""Browser tests of the dashboard: a real `mtlsgate serve` and Debian's Chromium, driven by
Playwright (which never downloads a browser here) through the accessible names of issue 6."""

from __future__ import annotations

import itertools
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.harness import MTLSGATE, Gateway, free_port, init_gateway, wait_healthy

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Chromium is missing: run `make deps`"
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield b
    finally:
        b.close()


# One gateway per test module (they change the same zones), started only for the modules that
# were collected, when the first test of the module needs it, and stopped after its last test.
# While a module runs, the next two collected modules' gateways boot in the background (a boot
# is ~5 s), so a full run does not pay for the boots one after the other.


def _serve(gw: Gateway) -> None:
    """Start `serve` on a fresh port; on any failure the process is killed, never left over."""
    port = free_port()
    log = open(gw.data_dir.parent / f"serve-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [MTLSGATE, "serve", *gw.store_args, "--api", f"127.0.0.1:{port}", "--no-edge"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(port, proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        log.close()
    gw.proc, gw.port = proc, port


def _boot(base: Path) -> Gateway:
    base.mkdir(parents=True)
    gw = init_gateway(base / "data", None, zones=("example.com", "other.org"))
    try:
        _serve(gw)
    except AssertionError:
        # The free port was taken between free_port() and the bind, or the machine was too
        # busy for the health check: once more, on a new port.
        _serve(gw)
    return gw


AHEAD = 2


class _Boots:
    def __init__(self, base: Path, order: list[str]) -> None:
        self.base, self.order = base, order
        self.pool = ThreadPoolExecutor(2)
        self.started: dict[str, Future[Gateway]] = {}

    def future(self, name: str) -> Future[Gateway]:
        if name not in self.started:
            self.started[name] = self.pool.submit(_boot, self.base / name)
        return self.started[name]

    def take(self, name: str) -> Gateway:
        future = self.future(name)
        if name in self.order:
            self.prefetch(self.order.index(name) + 1)
        return future.result(timeout=120)

    def prefetch(self, start: int) -> None:
        """Boot the next two collected modules' gateways meanwhile (two threads: more only
        compete for the CPU while each starts)."""
        for later in self.order[start : start + AHEAD]:
            self.future(later)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for future in self.started.values():
            if not future.cancelled() and future.exception() is None:
                future.result().stop()


def _module(item: pytest.Item) -> str:
    return item.module.__name__.rsplit(".", 1)[-1] if isinstance(item, pytest.Function) else ""


@pytest.fixture(scope="session")
def _boots(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[_Boots]:
    order: list[str] = []
    for item in request.session.items:
        if "gw" in getattr(item, "fixturenames", ()) and _module(item) not in order:
            order.append(_module(item))
    boots = _Boots(tmp_path_factory.mktemp("dash"), order)
    boots.prefetch(0)  # while Chromium starts
    try:
        yield boots
    finally:
        boots.close()


@pytest.fixture(scope="module")
def gw(_boots: _Boots, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """This module's gateway (SQLite), zones example.com and other.org."""
    gateway = _boots.take(request.module.__name__.rsplit(".", 1)[-1])
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="session")
def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"\ndashboard screenshots: {path}")
    return path


class Shots:
    """Saves a full-page screenshot of each page a test visits, numbered in visiting order."""

    _n = itertools.count(1)

    def __init__(self, page: Page, directory: Path, test: str) -> None:
        self.page, self.directory, self.test = page, directory, test

    def __call__(self, what: str) -> Path:
        name = re.sub(r"[^a-z0-9]+", "-", f"{self.test}-{what}".lower()).strip("-")
        path = self.directory / f"{next(self._n):03d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    p = context.new_page()
    try:
        yield p
    finally:
        context.close()


@pytest.fixture
def shot(page: Page, shots_dir: Path, request: pytest.FixtureRequest) -> Shots:
    return Shots(page, shots_dir, request.node.name)


def dash_url(gw: Gateway, path: str = "/") -> str:
    return f"http://127.0.0.1:{gw.port}/dash{path}"


def sign_in(page: Page, gw: Gateway, token: str) -> None:
    page.goto(dash_url(gw))
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Client Certificates", level=1)).to_be_visible()
