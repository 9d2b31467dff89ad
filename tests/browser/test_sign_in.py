"""Signing in and out in a real Chromium against the real provider (Keycloak from `make infra`):
the development user looks an order up, sees it masked, asks for the personal data and sees it
in full, then signs out (here and at the provider)."""

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in_at_provider
from tests.helpers import contract_example

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_orders() -> dict[str, dict[str, Any]]:
    return {"example": contract_example()}


def test_the_developer_signs_in_sees_the_order_masked_then_in_full_and_signs_out(open_tab, live_site):
    order = live_site.orders["example"]
    tab = open_tab(storage_state=None)  # nobody signed in
    page = tab.page

    page.goto(f"/?id={order['order_uid']}")
    expect(page.locator("#kc-form-login")).to_be_visible()  # the provider's login form
    tab.shot("sign-in.png")
    sign_in_at_provider(page, "developer")

    page.wait_for_url(f"{live_site.url}/?id={order['order_uid']}")
    delivery = page.get_by_role("region", name="Delivery")
    expect(delivery.get_by_text("T*** T*****")).to_be_visible()
    expect(delivery.get_by_text("t***@gmail.com")).to_be_visible()
    expect(page.get_by_text("Test Testov")).to_have_count(0)
    expect(page.locator(".account")).to_contain_text("developer")
    tab.shot("order-masked.png")

    # Asking for the personal data: the provider still knows the user (no password again).
    page.get_by_role("link", name="Sign in again to see them").click()
    page.wait_for_url(f"{live_site.url}/?id={order['order_uid']}")
    expect(delivery.get_by_text("Test Testov")).to_be_visible()
    expect(delivery.get_by_text("test@gmail.com")).to_be_visible()
    expect(page.locator("#masked-notice")).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    # Signed out here and at the provider: back on the page, which sends to the sign-in, where
    # the provider asks for a password again.
    expect(page.locator("#kc-form-login")).to_be_visible()
    page.goto(f"/?id={order['order_uid']}")
    expect(page.locator("#kc-form-login")).to_be_visible()
    assert tab.errors == [] and tab.dialogs == []
