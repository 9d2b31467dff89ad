"""Each order's served bytes stored beside its rows (orders.body, migration 0002): a cache miss is
one indexed read answered before Flask, orders stored before the column are served from their rows
exactly as before, and `flask backfill-bodies` fills them in, checked against the hash taken at
ingest. Against the real PostgreSQL."""

import psycopg2
from flask_migrate import downgrade, upgrade
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from werkzeug.test import Client
from werkzeug.wrappers import Response as WerkzeugResponse

import app.api.lookup as lookup
from app import create_app
from app.api.fast_path import CachedOrderFastPath
from app.cache import order_cache_for
from app.cache.warmup import warm_cache
from app.data.backfill import backfill_bodies
from app.documents import ServedOrder, encode_document, served_form
from app.extensions import db
from app.seed import OrderFactory
from config import Config, TestConfig
from harness.postgres import (
    admin_dsn,
    app_database,
    create_database,
    drop_database,
    execute_as_owner,
    owner_url,
)
from tests.helpers import save


def stored_body(app, order_uid: str) -> bytes | None:
    with app.app_context():
        body = db.session.scalar(text("SELECT body FROM orders WHERE order_uid = :uid"), {"uid": order_uid})
    return None if body is None else bytes(body)


def forget_bodies(database_url: str, *order_uids: str) -> None:
    """As orders stored before migration 0002 are: rows without their bytes (made so by the owner:
    the service's role may not update)."""
    execute_as_owner(database_url, "UPDATE orders SET body = NULL WHERE order_uid = ANY(%s)",
                     (list(order_uids),))


def as_owner(database_url: str):
    """An app on the owner's role, for what `flask backfill-bodies` does as the owner."""
    return create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": owner_url(database_url)})


def fast_path_of(app) -> CachedOrderFastPath:
    layer = app.wsgi_app
    while not isinstance(layer, CachedOrderFastPath):  # under the request-id and proxy layers
        layer = getattr(layer, "wsgi_app", None) or layer.app
    return layer


def test_the_consumer_stores_the_bytes_it_serves(app, empty_db, example_order):
    reordered = dict(reversed(list(example_order.items())))  # another key order, the same order
    save(app, [reordered])
    assert stored_body(app, example_order["order_uid"]) == ServedOrder.of(example_order).body
    assert stored_body(app, example_order["order_uid"]) == encode_document(served_form(example_order))


def test_a_miss_is_answered_before_flask_from_the_stored_bytes_and_fills_the_cache(
        app, empty_db, example_order):
    save(app, [example_order])
    path = f"/order/{example_order['order_uid']}"
    fast_path = fast_path_of(app)
    flask_calls = []

    def flask_app(environ, start_response):  # stands for Flask: it must not be reached
        flask_calls.append(environ["PATH_INFO"])
        start_response("500 INTERNAL SERVER ERROR", [])
        return [b"Flask was asked"]

    only_fast = CachedOrderFastPath(flask_app, fast_path.cache, app)
    first = Client(only_fast, WerkzeugResponse).get(path)
    assert flask_calls == []
    assert first.status_code == 200 and first.headers["X-Order-Source"] == "database"
    assert first.data == stored_body(app, example_order["order_uid"])
    assert first.headers["Content-Security-Policy"] and first.headers["ETag"]
    second = Client(only_fast, WerkzeugResponse).get(path)
    assert second.headers["X-Order-Source"] == "cache" and second.data == first.data
    assert second.headers["ETag"] == first.headers["ETag"]


def test_a_miss_answers_alike_on_the_fast_path_and_through_flask(app, database_url, empty_db, example_order):
    save(app, [example_order])
    path = f"/order/{example_order['order_uid']}"
    fast = Client(fast_path_of(app), WerkzeugResponse).get(path)
    other = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url})  # an empty cache of its own
    flask_only = Client(fast_path_of(other).wsgi_app, WerkzeugResponse).get(path)
    assert fast.status_code == flask_only.status_code == 200
    assert fast.data == flask_only.data
    assert sorted(fast.headers.items()) == sorted(flask_only.headers.items())


def test_an_unknown_id_and_a_database_error_are_read_once(database_url, empty_db, monkeypatch, authorize):
    reads = []
    real_read = lookup.order_body

    def counted(order_uid, app):
        reads.append(order_uid)
        return real_read(order_uid, app)

    monkeypatch.setattr(lookup, "order_body", counted)
    cache_off = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "CACHE_THRESHOLD": 0})
    unknown = authorize(cache_off.test_client()).get("/order/never-stored")
    assert unknown.status_code == 404 and unknown.headers["X-Order-Source"] == "database"
    assert reads == ["never-stored"]

    def unreachable(order_uid, app):
        reads.append(order_uid)
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(lookup, "order_body", unreachable)
    down = authorize(cache_off.test_client()).get("/order/some-order")
    assert down.status_code == 503 and down.get_json()["error"] == "database_unavailable"
    assert reads == ["never-stored", "some-order"]


def test_an_order_stored_before_the_column_is_served_from_its_rows_as_before(
        app, database_url, empty_db, example_order, authorize):
    example_order["date_created"] = "2021-11-26T09:22:19.5+03:00"  # served in UTC, with a fraction
    save(app, [example_order])
    stored = stored_body(app, example_order["order_uid"])
    forget_bodies(database_url, example_order["order_uid"])
    reader = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url})
    response = authorize(reader.test_client()).get(f"/order/{example_order['order_uid']}")
    assert response.status_code == 200 and response.data == stored
    assert response.get_json()["date_created"] == "2021-11-26T06:22:19.500000Z"


def test_the_backfill_stores_the_bytes_that_were_served(app, database_url, empty_db):
    orders = list(OrderFactory(seed=61).orders(25))
    save(app, orders)
    uids = [order["order_uid"] for order in orders]
    before = {uid: stored_body(app, uid) for uid in uids}
    forget_bodies(database_url, *uids)
    with as_owner(database_url).app_context():
        batches = list(backfill_bodies(batch_size=10))
        assert list(backfill_bodies()) == []  # nothing left: a second run does nothing
    assert [batch.filled for batch in batches] == [10, 10, 5]
    assert all(batch.mismatched == [] for batch in batches)
    assert {uid: stored_body(app, uid) for uid in uids} == before


def test_the_backfill_leaves_an_order_whose_rows_no_longer_match_its_hash(app, database_url, empty_db):
    orders = list(OrderFactory(seed=62).orders(3))
    save(app, orders)
    uids = [order["order_uid"] for order in orders]
    forget_bodies(database_url, *uids)
    # A row changed behind the service's back.
    execute_as_owner(database_url, "UPDATE orders SET delivery_city = 'Elsewhere' WHERE order_uid = %s",
                     (uids[1],))
    result = app.test_cli_runner().invoke(args=["backfill-bodies", "--quiet"])
    assert result.exit_code == 1, result.output
    assert "3 orders without stored bytes" in result.output
    assert "stored the bytes of 2 orders" in result.output
    assert "1 orders were left as they were" in result.output and uids[1] in result.output
    assert stored_body(app, uids[1]) is None
    assert stored_body(app, uids[0]) == encode_document(served_form(orders[0]))
    again = app.test_cli_runner().invoke(args=["backfill-bodies", "--quiet"])
    assert "1 orders without stored bytes" in again.output and again.exit_code == 1


def test_migration_0002_keeps_the_orders_already_stored_and_serves_them_unchanged(authorize):
    url = create_database(Config.SQLALCHEMY_DATABASE_URI, "orders_migration_0002")
    try:
        application = create_app(TestConfig, app_database(url))
        orders = list(OrderFactory(seed=63).orders(5))
        with application.app_context():
            upgrade()
            save(application, orders)
            expected = {o["order_uid"]: encode_document(served_form(o)) for o in orders}
            downgrade(revision="0001")  # the schema these orders would have been stored under
            upgrade()
            assert db.session.scalar(text("SELECT count(*) FROM orders WHERE body IS NULL")) == 5
            db.session.commit()
        client = authorize(application.test_client())
        served = {uid: client.get(f"/order/{uid}").data for uid in expected}
        assert served == expected
        owner = as_owner(url)
        with owner.app_context():
            assert sum(batch.filled for batch in backfill_bodies()) == 5
            stored = dict(db.session.execute(text("SELECT order_uid, body FROM orders")).all())
            db.engine.dispose()
        with application.app_context():
            db.engine.dispose()
        assert {uid: bytes(body) for uid, body in stored.items()} == expected
    finally:
        drop_database(url)


def test_a_read_on_a_connection_postgresql_has_dropped_is_answered_on_a_new_one(
        database_url, empty_db, app, example_order, authorize):
    save(app, [example_order])
    path = f"/order/{example_order['order_uid']}"
    reader = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "CACHE_THRESHOLD": 0})
    client = authorize(reader.test_client())
    assert client.get(path).status_code == 200  # the reads engine now holds an open connection
    admin = psycopg2.connect(admin_dsn(database_url, make_url(database_url).database))
    admin.autocommit = True
    with admin.cursor() as cursor:  # as a restart of PostgreSQL would: every session of the database ends
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                       "AND backend_type = 'client backend'")
        assert cursor.fetchone()[0] >= 1
    admin.close()
    again = client.get(path)
    assert again.status_code == 200 and again.headers["X-Order-Source"] == "database"


def test_the_warm_up_serves_the_stored_bytes_and_assembles_those_of_older_orders(
        app, database_url, empty_db):
    orders = list(OrderFactory(seed=64).orders(6))
    save(app, orders)
    expected = {order["order_uid"]: stored_body(app, order["order_uid"]) for order in orders}
    forget_bodies(database_url, *[order["order_uid"] for order in orders[:3]])
    starting = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "CACHE_WARMUP": 6})
    assert warm_cache(starting) == 6
    cache = order_cache_for(starting)
    assert {uid: cache.lookup(uid).body for uid in expected} == expected
