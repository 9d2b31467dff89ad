"""The JSON API, health, metrics and the OpenAPI document, against the real PostgreSQL (and the
real Kafka for readiness)."""

import json

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate as validate_openapi

from app import create_app
from app.cache import order_cache
from app.cache.warmup import warm_cache
from app.documents import served_form
from app.orders.store import save_orders
from app.seed.generator import OrderFactory
from config import TestConfig
from tests.helpers import wait_until
from tests.unit.test_validation import REJECTIONS, with_change


@pytest.fixture
def client(empty_db):
    order_cache.clear()
    return empty_db.test_client()


@pytest.fixture(scope="module")
def spec(app):
    document = app.test_client().get("/openapi.json").get_json()
    validate_openapi(document)
    return document


def conforms(spec, schema_name: str, instance) -> list[str]:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    return [error.message for error in validator.iter_errors(instance)]


def test_an_order_is_served_from_the_database_then_from_the_cache(client, example_order, spec):
    save_orders([example_order])
    first = client.get(f"/order/{example_order['order_uid']}")
    assert first.status_code == 200
    assert first.mimetype == "application/json"
    assert first.get_json() == example_order
    assert first.headers["X-Order-Source"] == "database"
    assert "immutable" in first.headers["Cache-Control"]
    assert conforms(spec, "Order", first.get_json()) == []
    second = client.get(f"/order/{example_order['order_uid']}")
    assert second.headers["X-Order-Source"] == "cache"
    assert second.data == first.data
    assert second.headers["ETag"] == first.headers["ETag"]


def test_a_matching_etag_is_not_modified(client, example_order):
    save_orders([example_order])
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


def test_an_order_arriving_after_a_miss_is_served_at_once_by_the_writing_worker(client, example_order):
    assert client.get(f"/order/{example_order['order_uid']}").status_code == 404
    save_orders([example_order])
    order_cache.put_documents([served_form(example_order)])  # what the consumer does after commit
    assert client.get(f"/order/{example_order['order_uid']}").status_code == 200


def test_other_workers_forget_a_miss_within_its_ttl(database_url, empty_db, example_order):
    app = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "CACHE_MISS_TTL": 1})
    order_cache.clear()
    client = app.test_client()
    assert client.get(f"/order/{example_order['order_uid']}").status_code == 404
    save_orders([example_order])  # stored by another worker: this one's cache is not told
    found = wait_until(lambda: client.get(f"/order/{example_order['order_uid']}").status_code == 200,
                       5, "the remembered miss expired")
    assert found


def test_unknown_routes_and_methods_answer_json(client):
    missing = client.get("/nope")
    assert missing.status_code == 404 and set(missing.get_json()) == {"error", "message"}
    wrong_method = client.post("/order/abc")
    assert wrong_method.status_code == 405 and set(wrong_method.get_json()) == {"error", "message"}


def test_no_stack_trace_reaches_a_client(client, monkeypatch):
    import app.orders.lookup as lookup

    def broken(order_uid):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(lookup, "get_order", broken)
    response = client.get("/order/some-id")
    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_error"
    assert b"secret" not in response.data and b"Traceback" not in response.data


def test_recent_orders_page_newest_first_with_a_cursor(client, spec):
    orders = list(OrderFactory(seed=51).orders(25))
    save_orders(orders)
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


def test_readyz_is_ready_with_both_services_up(database_url, kafka_bootstrap, empty_db, spec):
    app = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url})
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert conforms(spec, "Readiness", response.get_json()) == []


def test_readyz_names_kafka_when_it_is_unreachable(database_url, empty_db):
    app = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url,
                                  "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["kafka"]["ok"] is False and checks["postgresql"]["ok"] is True


def test_readyz_and_reads_name_postgresql_when_it_is_unreachable(kafka_bootstrap):
    app = create_app(TestConfig, {
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg2://orders:orders@127.0.0.1:1/orders"})
    order_cache.clear()
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["postgresql"]["ok"] is False
    read = client.get("/order/some-order")
    assert read.status_code == 503 and read.get_json()["error"] == "database_unavailable"


def test_metrics_count_cache_hits_and_misses(client, example_order):
    def value(text: str, sample: str) -> float:
        line = next((row for row in text.splitlines() if row.startswith(sample + " ")), None)
        return float(line.split()[-1]) if line else 0.0

    before = client.get("/metrics").get_data(as_text=True)
    save_orders([example_order])
    client.get(f"/order/{example_order['order_uid']}")
    client.get(f"/order/{example_order['order_uid']}")
    after = client.get("/metrics").get_data(as_text=True)
    hits, misses = 'orders_cache_requests_total{result="hit"}', 'orders_cache_requests_total{result="miss"}'
    assert value(after, hits) - value(before, hits) == 1
    assert value(after, misses) - value(before, misses) == 1
    assert 'http_request_duration_seconds_bucket{le="0.001",method="GET",route="/order/<path:order_uid>"' \
        in after.replace('status="200",', "")


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


def test_warm_up_loads_the_most_recent_orders(database_url, empty_db):
    orders = list(OrderFactory(seed=53).orders(30))
    save_orders(orders)
    app = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "CACHE_WARMUP": 10})
    order_cache.clear()
    assert warm_cache(app) == 10
    newest = sorted(orders, key=lambda o: served_form(o)["date_created"], reverse=True)
    for order in newest[:10]:
        assert json.loads(order_cache.lookup(order["order_uid"]).body) == served_form(order)
    assert order_cache.lookup(newest[10]["order_uid"]) is None


def test_a_cache_hit_is_answered_alike_by_the_fast_path_and_by_flask(client, empty_db, example_order):
    from werkzeug.test import Client
    from werkzeug.wrappers import Response as WerkzeugResponse

    from app.orders.fast_path import CachedOrderFastPath

    save_orders([example_order])
    path = f"/order/{example_order['order_uid']}"
    assert client.get(path).headers["X-Order-Source"] == "database"  # fills the cache
    fast_path = empty_db.wsgi_app
    while not isinstance(fast_path, CachedOrderFastPath):  # under the request-id and proxy layers
        fast_path = getattr(fast_path, "wsgi_app", None) or fast_path.app
    fast = Client(fast_path, WerkzeugResponse).get(path)
    flask_only = Client(fast_path.wsgi_app, WerkzeugResponse).get(path)
    assert fast.status_code == flask_only.status_code == 200
    assert fast.data == flask_only.data
    assert sorted(fast.headers.items()) == sorted(flask_only.headers.items())
    assert fast.headers["X-Order-Source"] == "cache"
    assert fast.headers["Content-Security-Policy"] and fast.headers["X-Content-Type-Options"] == "nosniff"
