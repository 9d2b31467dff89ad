"""The JSON API, health, metrics and the OpenAPI document, against the real PostgreSQL (and the
real Kafka for readiness)."""

import json
from datetime import UTC, datetime, timedelta, timezone

import psycopg2
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate as validate_openapi
from sqlalchemy.engine import make_url

from app import create_app
from app.cache import order_cache_for
from app.cache.warmup import warm_cache
from app.data.store import save_orders
from app.documents import served_form
from app.seed import OrderFactory
from config import TestConfig
from harness.postgres import admin_dsn
from harness.waiting import wait_until
from tests.contract_cases import REJECTIONS, with_change
from tests.helpers import cursor_of, metric, metric_series, save


@pytest.fixture(scope="module")
def spec(app):
    document = app.test_client().get("/openapi.json").get_json()
    validate_openapi(document)
    return document


def conforms(spec, schema_name: str, instance) -> list[str]:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    return [error.message for error in validator.iter_errors(instance)]


def test_an_order_is_served_from_the_database_then_from_the_cache(app, client, example_order, spec):
    save(app, [example_order])
    first = client.get(f"/order/{example_order['order_uid']}")
    assert first.status_code == 200
    assert first.mimetype == "application/json"
    assert first.get_json() == example_order
    assert first.headers["X-Order-Source"] == "database"
    assert first.headers["Cache-Control"] == "no-store"  # the full form: personal data
    assert conforms(spec, "Order", first.get_json()) == []
    second = client.get(f"/order/{example_order['order_uid']}")
    assert second.headers["X-Order-Source"] == "cache"
    assert second.data == first.data
    assert second.headers["ETag"] == first.headers["ETag"]


def test_a_matching_etag_is_not_modified(app, client, example_order):
    save(app, [example_order])
    etag = client.get(f"/order/{example_order['order_uid']}").headers["ETag"]
    again = client.get(f"/order/{example_order['order_uid']}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    other = client.get(f"/order/{example_order['order_uid']}", headers={"If-None-Match": '"nope"'})
    assert other.status_code == 200


@pytest.mark.parametrize("bad_id", ["a/b", "x" * 65, "with space", "caf%C3%A9", "semi;colon"])
def test_a_malformed_id_is_400_with_a_json_error(client, bad_id, spec):
    response = client.get(f"/order/{bad_id}")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_order_uid"
    assert conforms(spec, "Error", response.get_json()) == []


def test_an_unknown_id_is_404_and_remembered_briefly(client, spec):
    first = client.get("/order/not-there")
    assert first.status_code == 404 and first.headers["X-Order-Source"] == "database"
    assert conforms(spec, "Error", first.get_json()) == []
    second = client.get("/order/not-there")
    assert second.status_code == 404 and second.headers["X-Order-Source"] == "cache"


def test_an_order_arriving_after_a_miss_is_served_at_once_by_the_writing_worker(app, client, example_order):
    assert client.get(f"/order/{example_order['order_uid']}").status_code == 404
    save(app, [example_order])
    # What the consumer does after its commit:
    order_cache_for(client.application).put_document(served_form(example_order))
    assert client.get(f"/order/{example_order['order_uid']}").status_code == 200


def test_other_workers_forget_a_miss_within_its_ttl(app, database_url, empty_db, example_order, authorize):
    # Long enough that the second read below comes within it even on a loaded machine (with 1 s, a
    # landing run once read it after the miss had expired).
    other_worker = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "CACHE_MISS_TTL": 3})
    client = authorize(other_worker.test_client())
    path = f"/order/{example_order['order_uid']}"
    assert client.get(path).status_code == 404
    save(app, [example_order])  # stored by another worker: this one's cache is not told
    assert client.get(path).headers["X-Order-Source"] == "cache", "the miss is remembered at first"
    found = wait_until(lambda: (lambda response: response if response.status_code == 200 else None)(
        client.get(path)), 10, "the remembered miss expired")
    assert found.get_json() == example_order and found.headers["X-Order-Source"] == "database"


def test_unknown_routes_and_methods_answer_json(client):
    missing = client.get("/nope")
    assert missing.status_code == 404 and set(missing.get_json()) == {"error", "message"}
    wrong_method = client.post("/order/abc")
    assert wrong_method.status_code == 405 and set(wrong_method.get_json()) == {"error", "message"}


def test_no_stack_trace_reaches_a_client(client, monkeypatch):
    import app.api.lookup as lookup

    def broken(order_uid, app):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(lookup, "order_body", broken)
    response = client.get("/order/some-id")
    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_error"
    assert b"secret" not in response.data and b"Traceback" not in response.data


def test_recent_orders_page_newest_first_with_a_cursor(app, client, spec):
    orders = list(OrderFactory(seed=51).orders(25))
    save(app, orders)
    expected = sorted(orders, key=lambda o: served_form(o)["date_created"], reverse=True)
    seen, cursor = [], None
    for _ in range(3):
        response = client.get("/orders?limit=10" + (f"&before={cursor}" if cursor else ""))
        assert response.status_code == 200
        assert conforms(spec, "RecentOrders", response.get_json()) == []
        page = response.get_json()
        seen += page["orders"]
        cursor = page["next_cursor"]
    assert cursor is None
    assert [s["order_uid"] for s in seen] == [o["order_uid"] for o in expected]
    first = expected[0]
    assert seen[0] == {
        "order_uid": first["order_uid"],
        "date_created": served_form(first)["date_created"],
        "customer_id": first["customer_id"],
        "amount": first["payment"]["amount"],
        "currency": first["payment"]["currency"],
        "item_count": len(first["items"]),
        "delivery_city": first["delivery"]["city"],
    }


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "limit=-1", "limit=1.5",
                                   "before=not-a-cursor", "before=%%%"])
def test_bad_page_parameters_are_400(client, query):
    response = client.get(f"/orders?{query}")
    assert response.status_code == 400
    assert set(response.get_json()) == {"error", "message"}


def test_healthz(client, spec):
    response = client.get("/healthz")
    assert response.status_code == 200 and conforms(spec, "Health", response.get_json()) == []


def test_readyz_is_ready_with_both_services_up(database_url, kafka_bootstrap, spec):
    app = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url})
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert conforms(spec, "Readiness", response.get_json()) == []


def test_readyz_stays_ready_without_kafka_and_says_so(database_url, spec):
    """Reads need PostgreSQL only: Kafka being away is reported, not a reason to stop serving."""
    app = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url,
                                  "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    checks = response.get_json()["checks"]
    assert checks["kafka"]["ok"] is False and checks["postgresql"]["ok"] is True
    assert conforms(spec, "Readiness", response.get_json()) == []


def test_readyz_and_reads_name_postgresql_when_it_is_unreachable(kafka_bootstrap, authorize):
    app = create_app(TestConfig, {
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg2://orders:orders@127.0.0.1:1/orders"})
    client = authorize(app.test_client())
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["postgresql"]["ok"] is False
    assert b"127.0.0.1" not in ready.data, "connection details are for the log, not for clients"
    read = client.get("/order/some-order")
    assert read.status_code == 503 and read.get_json()["error"] == "database_unavailable"


def test_metrics_count_cache_hits_and_misses_and_time_each_request(app, client, example_order):
    save(app, [example_order])
    path = f"/order/{example_order['order_uid']}"
    before = client.get("/metrics").get_data(as_text=True)
    assert client.get(path).headers["X-Order-Source"] == "database"
    assert client.get(path).headers["X-Order-Source"] == "cache"
    assert client.get("/order/not-there").status_code == 404
    after = client.get("/metrics").get_data(as_text=True)

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved("orders_cache_requests_total", result="hit") == 1
    assert moved("orders_cache_requests_total", result="miss") == 2
    # Each request timed once, under its route's pattern and its status (the hit by the fast path).
    timed = "http_request_duration_seconds_count"
    assert moved(timed, route="/order/<path:order_uid>", method="GET", status="200") == 2
    assert moved(timed, route="/order/<path:order_uid>", method="GET", status="404") == 1
    assert moved(timed, route="/order/<path:order_uid>") == 3


def test_the_openapi_order_schema_agrees_with_cerberus(spec):
    """Drift check: what Cerberus accepts the document accepts, and the reverse for every rule."""
    for order in OrderFactory(seed=52).orders(50):
        assert conforms(spec, "Order", served_form(order)) == []
    disagreements = []
    for case, path, value, _ in REJECTIONS:
        if path == "date_created":
            continue  # served dates are normalised, so the document's date rule is the served one
        # The example's date is already in the served form, so the changed order is checked as is.
        if conforms(spec, "Order", with_change(path, value)) == []:
            disagreements.append(case)
    # JSON Schema can't say these; the document says them in its descriptions instead.
    inexpressible = {"amount as float", "NUL in a string", "lone surrogate"}
    assert set(disagreements) == inexpressible, "rejected by Cerberus but allowed by the OpenAPI schema"


def test_warm_up_loads_the_most_recent_orders(app, database_url, empty_db):
    orders = list(OrderFactory(seed=53).orders(30))
    save(app, orders)
    starting = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "CACHE_WARMUP": 10})
    assert warm_cache(starting) == 10
    newest = sorted(orders, key=lambda o: served_form(o)["date_created"], reverse=True)
    cache = order_cache_for(starting)
    for order in newest[:10]:
        assert json.loads(cache.lookup(order["order_uid"]).body) == served_form(order)
    assert cache.lookup(newest[10]["order_uid"]) is None


def test_warm_up_reads_page_by_page_the_newest_orders_and_stops_at_the_oldest(app, database_url, empty_db,
                                                                              monkeypatch):
    orders = list(OrderFactory(seed=54).orders(11))
    save(app, orders)
    monkeypatch.setattr("app.cache.warmup.PAGE", 3)
    newest = [order["order_uid"] for order in
              sorted(orders, key=lambda o: served_form(o)["date_created"], reverse=True)]
    for wanted, loaded in ((7, newest[:7]), (50, newest)):  # pages of 3, 3, 1; of 3, 3, 3, 2
        starting = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "CACHE_WARMUP": wanted})
        assert warm_cache(starting) == len(loaded)
        cache = order_cache_for(starting)
        assert [uid for uid in newest if cache.lookup(uid) is not None] == loaded


def test_a_warm_up_page_past_the_statement_timeout_stops_it_with_that_reason(app, database_url, empty_db,
                                                                             caplog):
    save(app, list(OrderFactory(seed=55).orders(3)))
    starting = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "CACHE_WARMUP": 3,
                                       "DB_STATEMENT_TIMEOUT_MS": 300})
    holder = psycopg2.connect(admin_dsn(database_url, make_url(database_url).database))
    try:
        with holder.cursor() as cursor:  # the warm-up's read waits for the lock past its timeout
            cursor.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        with caplog.at_level("WARNING", logger="app.cache.warmup"):
            assert warm_cache(starting) == 0
    finally:
        holder.rollback()
        holder.close()
    [warning] = [record.getMessage() for record in caplog.records if record.name == "app.cache.warmup"]
    assert "stopped at 0 of 3 orders" in warning and "longer than DB_STATEMENT_TIMEOUT_MS" in warning
    assert warm_cache(starting) == 3, "once the table is free, a new warm-up loads every order"


def test_a_cache_hit_is_answered_alike_by_the_fast_path_and_by_flask(app, client, example_order):
    from werkzeug.test import Client
    from werkzeug.wrappers import Response as WerkzeugResponse

    from app.api.fast_path import CachedOrderFastPath

    save(app, [example_order])
    path = f"/order/{example_order['order_uid']}"
    assert client.get(path).headers["X-Order-Source"] == "database"  # fills the cache
    fast_path = app.wsgi_app
    while not isinstance(fast_path, CachedOrderFastPath):  # under the request-id and proxy layers
        fast_path = getattr(fast_path, "wsgi_app", None) or fast_path.app
    fast = Client(fast_path, WerkzeugResponse).get(path)
    flask_only = Client(fast_path.wsgi_app, WerkzeugResponse).get(path)
    assert fast.status_code == flask_only.status_code == 200
    assert fast.data == flask_only.data
    assert sorted(fast.headers.items()) == sorted(flask_only.headers.items())
    assert fast.headers["X-Order-Source"] == "cache"
    assert fast.headers["Content-Security-Policy"] and fast.headers["X-Content-Type-Options"] == "nosniff"


# Digits that str.isdigit() accepts, and that int() either refuses (², ①) or reads as a number
# (fullwidth ５, Arabic-Indic ٥); a limit is ASCII digits only. And a number too long for int().
@pytest.mark.parametrize("limit", ["%C2%B2", "%E2%91%A0", "%EF%BC%95", "%D9%A5", "1%E2%81%B0",
                                   pytest.param("1" * 5000, id="5000-digits")])
def test_a_limit_in_anything_but_ascii_digits_is_400(client, limit):
    response = client.get(f"/orders?limit={limit}")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_limit"


# Cursors encode_cursor never makes: dates that overflow on their way to UTC, and order ids that
# int() reads but that are not plain ASCII digits or do not fit a bigint.
HOSTILE_CURSORS = [
    "0001-01-01T00:00:00+23:00|1",
    "9999-12-31T23:59:59-23:59|1",
    "2026-01-01T00:00:00|1",
    "2026-01-01T00:00:00+00:00|99999999999999999999",
    "2026-01-01T00:00:00+00:00|\u0665",
    "2026-01-01T00:00:00+00:00| 5",
    "2026-01-01T00:00:00+00:00|5_0",
    "2026-01-01T00:00:00+00:00|-1",
]


@pytest.mark.parametrize("raw", HOSTILE_CURSORS)
def test_a_cursor_encode_cursor_never_makes_is_400(client, raw):
    response = client.get(f"/orders?before={cursor_of(raw)}")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == "invalid_cursor"


# Offsets Python parses and PostgreSQL refuses (beyond ±15:59, or with seconds), and a usual one.
@pytest.mark.parametrize("offset", [timedelta(hours=9), timedelta(hours=23), -timedelta(hours=23, minutes=59),
                                    timedelta(hours=5, minutes=30, seconds=15),
                                    -timedelta(seconds=1, microseconds=500)])
def test_a_cursor_in_any_utc_offset_pages_by_its_instant(app, client, example_order, offset):
    save(app, [example_order])
    created = datetime(2021, 11, 26, 6, 22, 19, tzinfo=UTC)  # the example's date_created
    assert served_form(example_order)["date_created"] == "2021-11-26T06:22:19Z"

    def page_before(moment: datetime) -> list[str]:
        cursor = cursor_of(f"{moment.astimezone(timezone(offset)).isoformat()}|999999")
        response = client.get(f"/orders?before={cursor}")
        assert response.status_code == 200, response.get_data(as_text=True)
        return [order["order_uid"] for order in response.get_json()["orders"]]

    assert page_before(created + timedelta(seconds=1)) == [example_order["order_uid"]]
    assert page_before(created - timedelta(seconds=1)) == []


def test_request_metrics_keep_a_bounded_set_of_methods_and_routes(client):
    before = client.get("/metrics").get_data(as_text=True)
    for index in range(5):
        client.open("/orders", method=f"BREW{index}")
        client.open(f"/no/such/route/{index}", method="GET")
        client.open(f"/order/{index}", method="PROPFIND")
    after = client.get("/metrics").get_data(as_text=True)
    timed = "http_request_duration_seconds_count"
    label_values = {value for labels in metric_series(after, timed) for _, value in labels}
    assert not [value for value in label_values if "BREW" in value or "PROPFIND" in value or "/no/" in value]

    def moved(**labels: str) -> float:
        return metric(after, timed, **labels) - metric(before, timed, **labels)

    assert moved(method="other", status="405") == 10
    assert moved(route="unmatched", method="GET", status="404") == 5


def test_each_app_has_a_cache_of_its_own(app, database_url, empty_db, example_order, authorize):
    """A second app in the process (a test, a CLI beside a server) neither empties nor turns off
    the first one's cache, and each answers from its own."""
    save(app, [example_order])
    path = f"/order/{example_order['order_uid']}"
    first = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url})
    assert authorize(first.test_client()).get(path).headers["X-Order-Source"] == "database"
    second = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "CACHE_THRESHOLD": 0})
    assert authorize(first.test_client()).get(path).headers["X-Order-Source"] == "cache"
    assert authorize(second.test_client()).get(path).headers["X-Order-Source"] == "database"
    assert authorize(second.test_client()).get(path).headers["X-Order-Source"] == "database"


def test_a_lookup_racing_the_consumer_never_hides_the_order_it_stored(client, example_order, monkeypatch):
    """The lookup reads PostgreSQL (no order yet); the consumer then stores the order and writes it
    through; only then does the lookup remember its miss. The order must stay served."""
    import threading

    import app.api.lookup as lookup

    application, path = client.application, f"/order/{example_order['order_uid']}"
    read_postgresql = lookup.order_body

    def consumer_commits_right_after_the_read(order_uid: str, app):
        found = read_postgresql(order_uid, app)

        def consume() -> None:  # on a thread and in a session of its own, as the consumer does
            with application.app_context():
                save_orders([example_order])
            order_cache_for(application).put_document(served_form(example_order))

        consumer = threading.Thread(target=consume)
        consumer.start()
        consumer.join()
        return found

    monkeypatch.setattr(lookup, "order_body", consumer_commits_right_after_the_read)
    assert client.get(path).status_code == 404  # true when PostgreSQL was read
    monkeypatch.undo()
    again = client.get(path)
    assert again.status_code == 200 and again.headers["X-Order-Source"] == "cache"


def test_the_cache_byte_budget_comes_from_the_configuration(app, database_url, empty_db, example_order,
                                                             authorize):
    save(app, [example_order])
    path = f"/order/{example_order['order_uid']}"
    off = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "CACHE_MAX_BYTES": 0})
    off = authorize(off.test_client())
    assert [off.get(path).headers["X-Order-Source"] for _ in range(2)] == ["database"] * 2
    on = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "CACHE_MAX_BYTES": 10**6})
    on = authorize(on.test_client())
    assert [on.get(path).headers["X-Order-Source"] for _ in range(2)] == ["database", "cache"]


def test_a_query_string_that_is_not_utf8_is_400(client):
    # As gunicorn hands a raw request line over: one code point per byte.
    response = client.get("/orders", environ_overrides={"QUERY_STRING": "limit=\x80"})
    assert response.status_code == 400 and set(response.get_json()) == {"error", "message"}
