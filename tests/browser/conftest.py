"""Browser fixtures: Debian's headless Chromium driven by Playwright, against the real service
(gunicorn, with its Kafka consumers) fed through the real Kafka and PostgreSQL."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.seed import encode
from app.validation import validate_order
from harness.kafka import all_committed, create_topics, delete_topics, produce, read_all
from harness.oidc import user_password
from harness.postgres import empty_orders
from harness.service import Service, service_env
from harness.waiting import wait_until

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling home over a closed network.
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}


def _ensure_chromium() -> None:
    """Install Debian's chromium as `make browser` does, or skip with the reason why not."""
    if CHROMIUM.exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is missing and apt-get is not usable here; run `make browser` as root")
    result = subprocess.run(
        "apt-get update -qq && apt-get install -y -qq chromium",
        shell=True, capture_output=True, text=True, timeout=600, check=False,
    )
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing and `apt-get install chromium` failed: {result.stderr[-500:]}")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class LiveSite:
    """The running service and the orders that went through Kafka into it."""

    url: str
    orders: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def live_site(app, database_url, kafka_bootstrap, live_orders, tmp_path_factory) -> Iterator[LiveSite]:
    """The real service on an empty test database and topics of its own. The test module's
    `live_orders` fixture (name -> order) are produced to Kafka, and this returns once the service
    has consumed them: stored in PostgreSQL and committed, none dead-lettered."""
    for order in live_orders.values():
        assert validate_order(order) == {}, f"test order {order['order_uid']} breaks the contract"
    empty_orders(database_url)
    topics = create_topics(kafka_bootstrap)
    log_path = tmp_path_factory.mktemp("browser") / "service.log"
    service = Service(service_env(database_url, topics), log_path)
    try:
        service.start()
        produce(topics.bootstrap, topics.orders,
                [(order["order_uid"].encode(), encode(order)) for order in live_orders.values()])
        wait_until(lambda: all_committed(topics), 60, f"the service consumed the orders (log: {log_path})")
        assert read_all(topics.bootstrap, topics.dlq) == [], "an order was dead-lettered"
        yield LiveSite(service.url, live_orders)
    finally:
        service.kill()
        delete_topics(topics)


def sign_in_at_provider(page: Any, username: str) -> None:
    """On the provider's login page (Keycloak's form), as a person types it."""
    page.locator("#username").fill(username)
    page.locator("#password").fill(user_password(username))
    page.locator("#kc-login").click()


@pytest.fixture(scope="module")
def signed_in(browser, live_site) -> dict[str, Any]:
    """The browser state (cookies) of the development user signed in to the page through the
    real provider, with orders:pii: the pages' tests start from it."""
    context = browser.new_context(base_url=live_site.url)
    page = context.new_page()
    page.goto("/auth/signin?pii=1")
    sign_in_at_provider(page, "developer")
    page.wait_for_url(f"{live_site.url}/")
    state = context.storage_state()
    context.close()
    return state


@dataclass
class Tab:
    """A page with what it reported: JavaScript dialogs, console errors and uncaught errors."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        self.page.screenshot(path=path, full_page=True)
        return path


@pytest.fixture
def open_tab(browser, live_site, signed_in) -> Iterator[Any]:
    """open_tab(viewport=..., **context options) -> Tab in a fresh browser context on the site,
    signed in as the development user (`storage_state=None`: signed out)."""
    contexts = []

    def open_tab(viewport: dict[str, int] = DESKTOP, **options: Any) -> Tab:
        options.setdefault("storage_state", signed_in)
        context = browser.new_context(base_url=live_site.url, viewport=viewport, **options)
        contexts.append(context)
        tab = Tab(context.new_page())

        def on_dialog(dialog) -> None:
            tab.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        tab.page.on("dialog", on_dialog)
        tab.page.on("console", lambda msg: msg.type == "error" and tab.errors.append(msg.text))
        tab.page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))
        return tab

    yield open_tab
    for context in contexts:
        context.close()
