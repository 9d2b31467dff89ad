"""The web page in a real headless Chromium, end to end: orders go into Kafka, the real service
(gunicorn and its consumers) stores them in PostgreSQL, and the page shows them through the cache.
Screenshots of each state land in tests/artifacts/screenshots/."""

import copy
import random
from typing import Any

import pytest
from playwright.sync_api import expect

from app.seed import OrderFactory, edge_case_order
from app.validation import parse_rfc3339
from tests.helpers import contract_example

pytestmark = pytest.mark.slow

XSS = "<script>alert(1)</script>"
QUOTES = "O'Brien's \"quoted\" address"
XSS_ITEM = "\"'><script>alert(1)</script>"
# The longest values the contract allows, without a space to break at.
LONG_CUSTOMER = "C" * 255
LONG_CITY = "Ж" * 100
LONG_ITEM_NAME = "N" * 500
LONG_BRAND = "B" * 255
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def live_orders() -> dict[str, dict[str, Any]]:
    example = contract_example()
    factory = OrderFactory(seed=41)
    several_items = factory.order(min_items=4, max_items=6)
    xss = copy.deepcopy(example)
    xss["order_uid"] = xss["payment"]["transaction"] = "xss-test-order"
    xss["date_created"] = "2020-01-01T00:00:00Z"
    xss["customer_id"] = XSS
    xss["delivery"]["name"] = XSS
    xss["delivery"]["address"] = QUOTES
    xss["items"][0]["name"] = XSS_ITEM
    xss["items"][0]["brand"] = "Brand \"with\" 'quotes'"
    long_values = copy.deepcopy(example)
    long_values["order_uid"] = long_values["payment"]["transaction"] = "long-unbroken-values"
    long_values["date_created"] = "2021-06-01T12:00:00Z"
    long_values["customer_id"] = LONG_CUSTOMER
    long_values["delivery"]["city"] = LONG_CITY
    plain_item = long_values["items"][0]
    long_item = dict(plain_item, name=LONG_ITEM_NAME, brand=LONG_BRAND, rid="r" * 255)
    long_values["items"] = [long_item, plain_item]
    long_values["payment"]["goods_total"] = 2 * plain_item["total_price"]
    long_values["payment"]["amount"] = (long_values["payment"]["goods_total"]
                                        + long_values["payment"]["delivery_cost"])
    rng = random.Random(41)
    orders = {
        "long_values": long_values,
        "example": example,
        "several_items": several_items,
        "xss": xss,
        # every string at its maximum length, unbroken; every integer at 2**63-1
        "longest_texts": edge_case_order(rng, 5),
        "largest_numbers": edge_case_order(rng, 2),
    }
    orders.update({f"other-{n}": order for n, order in enumerate(factory.orders(5))})
    return orders


def newest_uid(orders: dict[str, dict[str, Any]]) -> str:
    return max(orders.values(), key=lambda order: parse_rfc3339(order["date_created"]))["order_uid"]


def focused(page) -> str:
    """What a screen reader would announce for the focused element: its label or its text."""
    return page.evaluate("""() => {
        const element = document.activeElement;
        return (element.labels && element.labels[0] ? element.labels[0].textContent
                : element.textContent).trim();
    }""")


def test_keyboard_search_opens_the_order(open_tab, live_site):
    tab = open_tab()
    page = tab.page
    order = live_site.orders["example"]
    page.goto("/")
    expect(page.get_by_role("searchbox", name="Order id")).to_be_focused()  # autofocus

    page.keyboard.type(order["order_uid"])
    with page.expect_response(lambda response: "?id=" in response.url) as answer:
        page.keyboard.press("Enter")

    assert answer.value.status == 200
    expect(page).to_have_url(f"{live_site.url}/?id={order['order_uid']}")
    expect(page).to_have_title(f"Order {order['order_uid']} · order-service")
    expect(page.get_by_role("heading", level=1)).to_have_text(order["order_uid"])
    payment = page.get_by_role("region", name="Payment")
    expect(payment.get_by_text("1,817 USD")).to_be_visible()
    expect(payment.get_by_text("2021-11-26 06:22:07 UTC")).to_be_visible()
    expect(page.get_by_role("region", name="Delivery").get_by_text("Kiryat Mozkin")).to_be_visible()
    expect(page.get_by_role("row", name="Mascaras")).to_contain_text("453 USD")
    assert tab.errors == [] and tab.dialogs == []
    tab.shot("search-result.png")


def test_a_deep_link_shows_the_order_with_all_its_items(open_tab, live_site):
    tab = open_tab()
    page = tab.page
    order = live_site.orders["several_items"]
    currency = order["payment"]["currency"]

    response = page.goto(f"/?id={order['order_uid']}")

    assert response.status == 200
    expect(page).to_have_title(f"Order {order['order_uid']} · order-service")
    items = page.get_by_role("region", name="Items")
    expect(items.locator("tbody tr")).to_have_count(len(order["items"]))
    for row, item in zip(items.locator("tbody tr").all(), order["items"], strict=True):
        expect(row.locator(".item__name")).to_have_text(item["name"])
        expect(row.locator("td").nth(4)).to_have_text(f"{item['total_price']:,} {currency}")
    expect(page.locator(".fact--total dd")).to_have_text(f"{order['payment']['amount']:,} {currency}")
    assert tab.errors == [] and tab.dialogs == []
    tab.shot("order.png")


def test_unknown_and_malformed_ids_get_their_own_pages(open_tab, live_site):
    tab = open_tab()
    page = tab.page

    response = page.goto("/?id=no-such-order-42")

    assert response.status == 404
    expect(page).to_have_title("Order not found · order-service")
    expect(page.get_by_role("heading", level=1)).to_have_text("Order not found")
    search = page.get_by_role("searchbox", name="Order id")
    expect(search).to_have_value("no-such-order-42")
    tab.shot("not-found.png")

    search.fill("a/b")
    with page.expect_response(lambda answer: "?id=" in answer.url) as answer:
        search.press("Enter")
    assert answer.value.status == 400
    expect(page.get_by_role("heading", level=1)).to_have_text("That is not an order id")
    expect(search).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("1 to 64 characters of A-Z a-z 0-9 _ -")).to_be_visible()
    tab.shot("invalid-id.png")
    # The browser reports the 404 and 400 documents themselves; nothing else may go wrong.
    assert [error for error in tab.errors if "Failed to load resource" not in error] == []


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_no_page_scrolls_sideways_even_with_the_longest_values(open_tab, live_site, viewport):
    tab = open_tab(viewport=viewport)
    page = tab.page
    screen = "phone" if viewport is PHONE else "desktop"
    too_wide = []
    for name in ("several_items", "longest_texts", "largest_numbers"):
        page.goto(f"/?id={live_site.orders[name]['order_uid']}")
        width, inner = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert inner == viewport["width"]
        if width > inner:
            too_wide.append(f"{name}: {width}px wide on a {inner}px screen")
        if name != "several_items":  # that one is order.png and order-phone.png
            tab.shot(f"{name.replace('_', '-')}-{screen}.png")
    for path in ("/", "/?id=no-such-order"):
        page.goto(path)
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), path
    assert too_wide == []


def test_the_items_are_readable_on_a_phone(open_tab, live_site):
    tab = open_tab(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = tab.page
    order = live_site.orders["several_items"]

    page.goto(f"/?id={order['order_uid']}")

    width, inner = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner == PHONE["width"]
    rows = page.get_by_role("region", name="Items").locator("tbody tr")
    expect(rows).to_have_count(len(order["items"]))
    for row, item in zip(rows.all(), order["items"], strict=True):
        expect(row.locator(".item__name")).to_have_text(item["name"])
        box = row.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{item['name']} overflows"
        name_size = row.locator(".item__name").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        assert name_size >= 15
        # Each value is labelled on the phone layout, where the column headers are out of sight.
        labels = row.locator("td").evaluate_all(
            "cells => cells.map(cell => getComputedStyle(cell, '::before').content)"
        )
        assert labels == ['"Brand"', '"Size"', '"Price"', '"Sale"', '"Total"', '"Status"']
        expect(row.locator("td").nth(4)).to_be_visible()
    assert tab.errors == [] and tab.dialogs == []
    tab.shot("order-phone.png")
    page.goto("/")
    tab.shot("index-phone.png")


def test_markup_in_an_order_is_shown_as_text_and_runs_nothing(open_tab, live_site):
    tab = open_tab()
    page = tab.page
    order = live_site.orders["xss"]

    page.goto(f"/?id={order['order_uid']}")

    delivery = page.get_by_role("region", name="Delivery")
    expect(delivery.get_by_text(XSS, exact=True)).to_be_visible()
    expect(delivery.get_by_text(QUOTES, exact=True)).to_be_visible()
    expect(page.get_by_text(XSS_ITEM, exact=True)).to_be_visible()
    expect(page.get_by_text("Brand \"with\" 'quotes'", exact=True)).to_be_visible()
    assert page.locator("script").count() == 0
    tab.shot("xss.png")

    page.goto("/")  # the customer id is on the index too
    expect(page.get_by_role("row", name=order["order_uid"]).get_by_text(XSS, exact=True)).to_be_visible()
    assert page.locator("script").count() == 0
    assert tab.dialogs == []
    assert tab.errors == []


def test_the_index_works_with_the_keyboard_alone(open_tab, live_site):
    tab = open_tab()
    page = tab.page
    page.goto("/")
    search = page.get_by_role("searchbox", name="Order id")
    expect(search).to_be_focused()
    tab.shot("index.png")

    # Back to the top: the first stop is the skip link, shown once it has the focus.
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()

    first_order = newest_uid(live_site.orders)
    stops = []
    for _ in range(7):
        page.keyboard.press("Tab")
        stops.append(focused(page))
        if stops[-1] == first_order:
            break
    assert stops == ["order-service", "Order id", "Find order", "Sign out", first_order]
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "the focused link has no visible focus ring"
    tab.shot("index-focus.png")

    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_site.url}/?id={first_order}")
    expect(page.get_by_role("heading", level=1)).to_have_text(first_order)
    assert tab.errors == [] and tab.dialogs == []


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_long_unbroken_values_do_not_stretch_the_tables(open_tab, live_site, viewport):
    """A 255-character customer id, a 100-character city and a 500-character item name, none with
    a space, take at most two lines each; the whole value is in the tooltip."""
    tab = open_tab(viewport=viewport)
    page = tab.page
    screen = "phone" if viewport is PHONE else "desktop"
    order = live_site.orders["long_values"]

    page.goto("/")
    long_row = page.get_by_role("row", name=order["order_uid"])
    plain_row = page.get_by_role("row", name=live_site.orders["example"]["order_uid"])
    long_height, plain_height = long_row.bounding_box()["height"], plain_row.bounding_box()["height"]
    assert long_height <= 2 * plain_height, f"{long_height}px against {plain_height}px for a plain order"
    expect(long_row.get_by_title(LONG_CUSTOMER, exact=True)).to_have_text(LONG_CUSTOMER)
    expect(long_row.get_by_title(LONG_CITY, exact=True)).to_have_text(LONG_CITY)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    tab.shot(f"index-long-values-{screen}.png")

    page.goto(f"/?id={order['order_uid']}")
    rows = page.get_by_role("region", name="Items").locator("tbody tr")
    expect(rows).to_have_count(2)
    long_height, plain_height = rows.nth(0).bounding_box()["height"], rows.nth(1).bounding_box()["height"]
    assert long_height <= 2 * plain_height, f"{long_height}px against {plain_height}px for a plain item"
    expect(rows.nth(0).get_by_title(LONG_ITEM_NAME, exact=True)).to_have_text(LONG_ITEM_NAME)
    expect(rows.nth(0).get_by_title(LONG_BRAND, exact=True)).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    assert tab.errors == [] and tab.dialogs == []
    tab.shot(f"order-long-values-{screen}.png")
