"""Never a 500 from user input: property-based tests (Hypothesis) over order ids, `limit`, `before`
and the page's query string, and Schemathesis against /openapi.json, all through the Flask test
client on the real test database. Each is bounded (max_examples, no per-example deadline because
timings are noisy here) to a few seconds."""

import base64
from datetime import datetime, timedelta, timezone
from urllib.parse import quote_from_bytes

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.cache import order_cache_for
from app.data.store import save_orders
from app.seed import OrderFactory
from harness.postgres import empty_orders

BOUNDED = settings(max_examples=300, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def stocked(app: Flask, database_url: str) -> tuple[Flask, list[str]]:
    """The session's app on a database holding 30 generated orders (their ids are returned too)."""
    orders = list(OrderFactory(seed=61).orders(30))
    empty_orders(database_url)
    with app.app_context():
        save_orders(orders)
    order_cache_for(app).clear()
    return app, [order["order_uid"] for order in orders]


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates too, as raw bytes on the wire


def user_text(known: list[str] | None = None) -> st.SearchStrategy[bytes]:
    """What a user or an attacker may put in a URL part: any bytes, any text, digits of every
    script, and (when given) real values with something added."""
    strategies = [
        st.binary(max_size=80),
        st.text(max_size=80).map(utf8),
        st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=6).map(utf8),
        st.integers(min_value=-(10**30), max_value=10**30).map(lambda n: str(n).encode()),
    ]
    if known:
        strategies.append(st.tuples(st.sampled_from(known), st.text(max_size=3))
                          .map(lambda pair: utf8(pair[0] + pair[1])))
    return st.one_of(*strategies)


def offsets() -> st.SearchStrategy[timezone]:
    # Every offset Python allows (under a day, to the microsecond), PostgreSQL's ±15:59 or not.
    return st.timedeltas(min_value=timedelta(hours=-23, minutes=-59, seconds=-59),
                         max_value=timedelta(hours=23, minutes=59, seconds=59)).map(timezone)


def cursors() -> st.SearchStrategy[bytes]:
    """`before` values: any bytes, and the cursor's own shape (base64 of "<ISO date>|<id>") with
    dates in any offset, naive or out of range on the way to UTC, and ids of any kind."""
    moments = st.one_of(
        st.datetimes(timezones=offsets()).map(datetime.isoformat),
        st.datetimes().map(datetime.isoformat),
        st.text(max_size=40),
    )
    ids = st.one_of(st.integers().map(str), st.text(max_size=25))
    shaped = st.tuples(moments, ids).map(
        lambda pair: base64.urlsafe_b64encode(utf8(f"{pair[0]}|{pair[1]}")).rstrip(b"="))
    return st.one_of(shaped, user_text())


def quoted(raw: bytes) -> str:
    return quote_from_bytes(raw, safe="")


def assert_json_error_or(response, *ok: int) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code not in ok:
        assert response.status_code == 400, response.status_code
        assert set(response.get_json()) == {"error", "message"}


@BOUNDED
@given(data=st.data())
def test_no_order_id_makes_a_500(stocked, authorize, data):
    app, uids = stocked
    raw = data.draw(user_text(uids))
    client = authorize(app.test_client())
    response = client.get(f"/order/{quoted(raw)}")
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code == 308:  # werkzeug merges repeated slashes ("/order//x") by redirecting
        assert "/order/" in response.headers["Location"]
    else:
        assert response.status_code in (200, 400, 404) and response.mimetype == "application/json"
    page = client.get(f"/?id={quoted(raw)}")
    assert page.status_code in (200, 400, 404) and page.mimetype == "text/html"


@BOUNDED
@given(limit=user_text())
def test_no_limit_makes_a_500(stocked, authorize, limit):
    app, _ = stocked
    response = authorize(app.test_client()).get(f"/orders?limit={quoted(limit)}")
    assert_json_error_or(response, 200)
    if response.status_code == 400:
        assert response.get_json()["error"] == "invalid_limit"


@BOUNDED
@given(before=cursors(), limit=st.integers(min_value=1, max_value=100))
def test_no_cursor_makes_a_500(stocked, authorize, before, limit):
    app, _ = stocked
    client = authorize(app.test_client())
    response = client.get(f"/orders?limit={limit}&before={quoted(before)}")
    assert_json_error_or(response, 200)
    page = client.get(f"/?before={quoted(before)}")
    assert page.status_code in (200, 400) and page.mimetype == "text/html"


@BOUNDED
@given(query=st.one_of(
    st.binary(max_size=120),
    st.lists(st.tuples(st.sampled_from([b"id", b"before", b"limit", b"x"]), st.binary(max_size=40)),
             max_size=4).map(lambda pairs: b"&".join(key + b"=" + quoted(value).encode()
                                                      for key, value in pairs)),
))
def test_no_query_string_makes_the_page_a_500(stocked, authorize, query):
    app, _ = stocked
    # As gunicorn hands it over: the raw bytes of the query, one code point per byte.
    client = authorize(app.test_client())
    response = client.get("/", environ_overrides={"QUERY_STRING": query.decode("latin-1")})
    assert response.status_code in (200, 400, 404), response.get_data(as_text=True)[:300]
    assert response.mimetype == "text/html"


@pytest.fixture(scope="module")
def api_schema(stocked):
    app, _ = stocked
    # /readyz asks Kafka on every call (seconds when it is away): test_api.py covers it.
    return schemathesis.openapi.from_wsgi("/openapi.json", app).exclude(path="/readyz")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_openapi_document(case, full_access):
    # Every check of Schemathesis (no 5xx, statuses, headers and bodies as documented, invalid
    # input rejected), but one: a `before` cursor is any string to the document, while only one
    # this service made is accepted (anything else is the documented 400).
    excluded = [positive_data_acceptance] if "before" in (case.query or {}) else []
    # With a token that may see everything; Schemathesis also checks that its calls without one
    # (or with a bad one) are refused as documented.
    case.call_and_validate(headers=full_access(), excluded_checks=excluded)
