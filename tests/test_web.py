"""The web page (`GET /`, `GET /?id=...`) with Flask's test client against the real PostgreSQL: what a
reader sees, the status codes, escaping and the security headers on every kind of response."""

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest

from app.validation import validate_order
from app.web.routes import money
from tests.helpers import cursor_of, save

SECURITY_HEADERS = {
    # Nothing from anywhere but the page's own stylesheet and images; no scripts, no framing.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
XSS = "<script>alert(1)</script>"
QUOTES = "O'Brien \"quoted\""


# A tiny DOM, enough to read pages the way a reader does: by label, by table row, by link.
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list["Node | str"] = field(default_factory=list)

    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join("".join(parts).split())

    def find_all(self, tag: str, **attrs: str) -> list["Node"]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag and all(child.attrs.get(k) == v for k, v in attrs.items()):
                    found.append(child)
                found.extend(child.find_all(tag, **attrs))
        return found

    def find(self, tag: str, **attrs: str) -> "Node":
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}> in the page"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def fields(page: Node) -> dict[str, list[str]]:
    """Every <dt> label with the texts of the <dd> that follows it."""
    labelled: dict[str, list[str]] = {}
    for group in page.find_all("div"):
        terms = [c for c in group.children if isinstance(c, Node) and c.tag in ("dt", "dd")]
        if len(terms) == 2 and terms[0].tag == "dt":
            labelled.setdefault(terms[0].text(), []).append(terms[1].text())
    return labelled


def field_value(page: Node, label: str) -> str:
    values = fields(page).get(label)
    assert values, f"no field labelled {label!r}; labels: {sorted(fields(page))}"
    return values[0]


def body_rows(table: Node) -> list[list[str]]:
    return [[cell.text() for cell in row.children if isinstance(cell, Node)]
            for row in table.find("tbody").find_all("tr")]


def search_box(page: Node) -> Node:
    form = page.find("form", role="search")
    assert form.attrs["method"] == "get" and form.attrs["action"] == "/"
    box = form.find("input", name="id")
    label = page.find("label", **{"for": box.attrs["id"]})
    assert label.text() == "Order id"
    return box


def order_like(example: dict[str, Any], uid: str, created: datetime, **changes: Any) -> dict[str, Any]:
    order = copy.deepcopy(example)
    order["order_uid"] = order["payment"]["transaction"] = uid
    order["date_created"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    order.update(changes)
    return order


def get_page(client, path: str, status: int = 200) -> Node:
    response = client.get(path)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    return parse(response.get_data(as_text=True))


def test_money_groups_thousands_and_names_the_currency():
    assert money(1817, "USD") == "1,817 USD"
    assert money(0, "EUR") == "0 EUR"
    assert money(2**63 - 1, "RUB") == "9,223,372,036,854,775,807 RUB"


def test_the_index_lists_recent_orders_newest_first_with_links(app, client, example_order):
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    save(app, [order_like(example_order, f"order-{n}", start + timedelta(hours=n)) for n in (2, 0, 1)])

    page = get_page(client, "/")

    assert page.find("title").text() == "Recent orders · order-service"
    assert "autofocus" in search_box(page).attrs
    rows = body_rows(page.find("table"))
    assert [row[0] for row in rows] == ["order-2", "order-1", "order-0"]
    assert rows[0] == ["order-2", "2024-05-01 14:00:00", "test", "Kiryat Mozkin", "1", "1,817 USD"]
    links = [a.attrs["href"] for a in page.find("tbody").find_all("a")]
    assert links == ["/?id=order-2", "/?id=order-1", "/?id=order-0"]
    assert not [a for a in page.find_all("a") if "before=" in (a.attrs.get("href") or "")]


def test_the_index_pages_back_through_older_orders(app, client, example_order):
    start = datetime(2024, 1, 1, tzinfo=UTC)
    save(app, [order_like(example_order, f"order-{n:02}", start + timedelta(days=n)) for n in range(25)])

    first = get_page(client, "/")
    assert [row[0] for row in body_rows(first.find("table"))] == [f"order-{n:02}" for n in range(24, 4, -1)]
    older = first.find("a", **{"class": "pager__older"}).attrs["href"]
    assert older.startswith("/?before=")

    second = get_page(client, older)
    assert second.find("title").text() == "Older orders · order-service"
    assert [row[0] for row in body_rows(second.find("table"))] == [f"order-{n:02}" for n in range(4, -1, -1)]
    assert not second.find_all("a", **{"class": "pager__older"})
    assert "/" in [a.attrs["href"] for a in second.find("nav").find_all("a")]


def test_an_empty_index_says_so(client):
    page = get_page(client, "/")
    assert "No orders yet" in page.find("main").text()
    search_box(page)


def test_a_broken_page_link_is_a_400_page(client):
    page = get_page(client, "/?before=not-a-cursor", status=400)
    assert "This page link is broken" in page.find("main").text()
    search_box(page)


def test_an_order_page_shows_every_field_of_the_contract_example(app, client, example_order):
    save(app, [example_order])

    page = get_page(client, "/?id=b563feb7b2b84b6test")

    assert page.find("title").text() == "Order b563feb7b2b84b6test · order-service"
    assert page.find("h1").text() == "b563feb7b2b84b6test"
    assert "autofocus" not in search_box(page).attrs
    assert page.find("time").attrs["datetime"] == "2021-11-26T06:22:19Z"
    assert "Created 2021-11-26 06:22:19 UTC" in page.find("main").text()
    expected = {
        "Item status": "202",
        "Track number": "WBILMTESTTRACK",
        "Delivery service": "meest",
        "Amount": "1,817 USD",
        "Customer": "test",
        "Entry": "WBIL",
        "Locale": "en",
        "Shard key": "9",
        "SM id": "99",
        "OOF shard": "1",
        "Internal signature": "empty",
        # delivery
        "Name": "Test Testov",
        "Phone": "+9720000000",
        "Email": "test@gmail.com",
        "Address": "Ploshad Mira 15",
        "City": "Kiryat Mozkin",
        "Region": "Kraiot",
        "ZIP": "2639809",
        # payment
        "Transaction": "b563feb7b2b84b6test",
        "Request id": "empty",
        "Provider": "wbpay",
        "Bank": "alpha",
        "Paid at": "2021-11-26 06:22:07 UTC",
        "Currency": "USD",
        "Goods total": "317 USD",
        "Delivery cost": "1,500 USD",
        "Custom fee": "0 USD",
    }
    assert {label: field_value(page, label) for label in expected} == expected

    items = page.find("table", **{"class": "table table--stack items"})
    [row] = body_rows(items)
    item = items.find("tbody").find("tr")
    assert item.find("span", **{"class": "item__name"}).text() == "Mascaras"
    ids = fields(item)
    assert ids == {"Article": ["2389212"], "chrt": ["9934930"], "rid": ["ab4219087a764ae0btest"],
                   "track": ["WBILMTESTTRACK"]}
    assert row[1:] == ["Vivienne Sabo", "0", "453 USD", "−30%", "317 USD", "202"]
    assert items.find("tfoot").text() == "Items total 317 USD"


def test_an_order_page_names_each_item_and_sums_them(app, client, example_order):
    order = copy.deepcopy(example_order)
    second = {**order["items"][0], "name": "Lipstick", "brand": "", "size": "M", "price": 1200, "sale": 0,
              "total_price": 1200, "status": 100, "chrt_id": 1, "rid": "rid-2"}
    order["items"].append(second)
    save(app, [order])

    page = get_page(client, f"/?id={order['order_uid']}")

    rows = body_rows(page.find("table", **{"class": "table table--stack items"}))
    names = [row.find("span", **{"class": "item__name"}).text() for row in page.find("tbody").find_all("tr")]
    assert names == ["Mascaras", "Lipstick"]
    assert rows[1][1:] == ["empty", "M", "1,200 USD", "0%", "1,200 USD", "100"]
    assert page.find("tfoot").text() == "Items total 1,517 USD"
    assert field_value(page, "Item statuses") == "202 × 1 100 × 1"


def test_the_page_reads_through_the_order_cache(app, client, example_order):
    save(app, [example_order])
    assert client.get("/?id=b563feb7b2b84b6test").headers["X-Order-Source"] == "database"
    assert client.get("/?id=b563feb7b2b84b6test").headers["X-Order-Source"] == "cache"
    # ...the very cache the JSON API fills and reads
    assert client.get("/order/b563feb7b2b84b6test").headers["X-Order-Source"] == "cache"


def test_a_payment_date_beyond_the_calendar_still_renders(app, client, example_order):
    example_order["payment"]["payment_dt"] = 2**63 - 1
    save(app, [example_order])
    page = get_page(client, "/?id=b563feb7b2b84b6test")
    assert field_value(page, "Paid at") == f"{2**63 - 1} (Unix seconds)"


def test_an_id_with_surrounding_spaces_is_found(app, client, example_order):
    save(app, [example_order])
    page = get_page(client, "/?id=++b563feb7b2b84b6test+")
    assert page.find("h1").text() == "b563feb7b2b84b6test"


def test_an_empty_search_shows_the_index(client):
    page = get_page(client, "/?id=")
    assert page.find("title").text() == "Recent orders · order-service"


def test_an_unknown_id_is_a_404_page_with_the_search_box(client):
    page = get_page(client, "/?id=no-such-order", status=404)
    assert page.find("title").text() == "Order not found · order-service"
    assert page.find("h1").text() == "Order not found"
    assert search_box(page).attrs["value"] == "no-such-order"
    assert "no-such-order" in page.find("main").text()


@pytest.mark.parametrize("bad_id", ["a/b", "x" * 65, XSS, "semi;colon", "ünïcode"])
def test_a_malformed_id_is_a_400_page_with_the_search_box(client, bad_id):
    response = client.get("/", query_string={"id": bad_id})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "<script>alert" not in html
    page = parse(html)
    assert page.find("h1").text() == "That is not an order id"
    box = search_box(page)
    assert box.attrs["value"] == bad_id
    assert box.attrs["aria-invalid"] == "true"
    assert "1 to 64 characters of A-Z a-z 0-9 _ -" in page.find("p", id=box.attrs["aria-describedby"]).text()


def test_fields_holding_markup_and_quotes_come_back_as_text(app, client, example_order):
    order = copy.deepcopy(example_order)
    order["delivery"]["name"] = XSS
    order["delivery"]["address"] = f"{QUOTES} {XSS}"
    order["delivery"]["email"] = "o'brien\"x@example.com"
    order["items"][0]["name"] = "\"'><script>alert(1)</script>"
    order["items"][0]["brand"] = QUOTES
    order["customer_id"] = XSS
    assert validate_order(order) == {}
    save(app, [order])

    for path in ("/", f"/?id={order['order_uid']}"):
        response = client.get(path)
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    page = parse(html)  # the order page, read back as a browser decodes it
    assert field_value(page, "Name") == XSS
    assert field_value(page, "Address") == f"{QUOTES} {XSS}"
    assert field_value(page, "Email") == "o'brien\"x@example.com"
    assert page.find("span", **{"class": "item__name"}).text() == "\"'><script>alert(1)</script>"
    assert "&#34;" in html and "&#39;" in html


@pytest.mark.parametrize(
    "path, status, mimetype",
    [
        ("/", 200, "text/html"),
        ("/?id=b563feb7b2b84b6test", 200, "text/html"),
        ("/?id=missing", 404, "text/html"),
        ("/?id=a/b", 400, "text/html"),
        ("/web/static/style.css", 200, "text/css"),
        ("/order/b563feb7b2b84b6test", 200, "application/json"),
        ("/order/missing", 404, "application/json"),
        ("/order/a;b", 400, "application/json"),
        ("/orders", 200, "application/json"),
        ("/no/such/route", 404, "application/json"),
        ("/healthz", 200, "application/json"),
    ],
)
def test_every_response_carries_the_security_headers(app, client, example_order, path, status, mimetype):
    save(app, [example_order])
    response = client.get(path)
    assert (response.status_code, response.mimetype) == (status, mimetype)
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == expected_headers(app, mimetype)


def expected_headers(app, mimetype: str) -> dict[str, str]:
    """SECURITY_HEADERS; a page's policy also lets its sign-out form end at the provider."""
    if mimetype != "text/html":
        return SECURITY_HEADERS
    provider = urlsplit(app.config["AUTH_ISSUER"])
    return {**SECURITY_HEADERS, "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action 'self' {provider.scheme}://{provider.netloc}; frame-ancestors 'none'; base-uri 'none'")}


def test_pages_use_no_inline_style_or_script(app, client, example_order):
    save(app, [example_order])
    for path in ("/", "/?id=b563feb7b2b84b6test", "/?id=missing"):
        html = client.get(path).get_data(as_text=True)
        assert "<script" not in html and "<style" not in html and " style=" not in html
        page = parse(html)
        [stylesheet] = page.find_all("link", rel="stylesheet")
        assert stylesheet.attrs["href"].split("?v=")[0] == "/web/static/style.css"
        skip = page.find("a", **{"class": "skip-link"})
        assert skip.attrs["href"] == "#main" and page.find("main", id="main")


def test_a_database_outage_is_a_503_page(client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def unreachable(order_uid):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr("app.web.routes.find_order", unreachable)
    page = get_page(client, "/?id=b563feb7b2b84b6test", status=503)
    assert page.find("h1").text() == "Orders are unavailable right now"
    search_box(page)
    assert client.get("/?id=b563feb7b2b84b6test").headers["Retry-After"] == "5"


def test_an_unexpected_error_is_a_500_page_without_details(client, monkeypatch):
    def broken(order_uid):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("app.web.routes.find_order", broken)
    response = client.get("/?id=b563feb7b2b84b6test")
    assert response.status_code == 500 and response.mimetype == "text/html"
    assert "secret internals" not in response.get_data(as_text=True)
    assert parse(response.get_data(as_text=True)).find("h1").text() == "Something went wrong"
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == expected_headers(
        client.application, "text/html")


@pytest.mark.parametrize("raw", ["0001-01-01T00:00:00+23:00|1",
                                 "2026-01-01T00:00:00+00:00|99999999999999999999"])
def test_a_page_link_that_overflows_is_a_400_page(client, raw):
    page = get_page(client, f"/?before={cursor_of(raw)}", status=400)
    assert page.find("h1").text() == "This page link is broken"


def test_a_page_link_with_an_offset_postgresql_refuses_pages_by_its_instant(app, client, example_order):
    save(app, [example_order])  # created 2021-11-26T06:22:19Z: 2021-11-27T05:22:19+23:00, 11:52:34+05:30:15
    page = get_page(client, f"/?before={cursor_of('2021-11-27T05:22:20+23:00|999999')}")
    assert [row[0] for row in body_rows(page.find("table"))] == [example_order["order_uid"]]
    page = get_page(client, f"/?before={cursor_of('2021-11-26T11:52:33+05:30:15|999999')}")
    assert not page.find_all("tbody") and "No orders" in page.find("main").text()


def test_a_query_string_that_is_not_utf8_is_a_400_page(client):
    response = client.get("/", environ_overrides={"QUERY_STRING": "id=\xff"})
    assert response.status_code == 400 and response.mimetype == "text/html"
