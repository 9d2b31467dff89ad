"""PostgreSQL that stops answering, against the real server: a read waits at most the statement
timeout (then 503), an insert waits at most the lock timeout behind another session's insert of
the same order (then the consumer treats it as an outage), and connections keep TCP keepalives."""

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psycopg2
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import db
from config import TestConfig
from harness.kafka import all_committed, produce, read_all
from harness.postgres import admin_dsn
from harness.waiting import wait_until
from tests.helpers import save, stored_uids

# Whatever the code under test does, a holder's transaction ends by itself after this long, so
# that a test of a missing timeout fails instead of hanging.
HOLDER_GIVES_UP = "20s"


@contextmanager
def session_holding(database_url: str, *statements: str, params: tuple = ()) -> Iterator:
    """Another session of the test database, in a transaction that ran `statements` and stays
    open (uncommitted) until the block ends, when it is rolled back."""
    holder = psycopg2.connect(admin_dsn(database_url, make_url(database_url).database))
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = '{HOLDER_GIVES_UP}'")
            for statement in statements:
                cursor.execute(statement, params)
        yield holder
    finally:
        # The server may have ended the session after HOLDER_GIVES_UP; the test says what went wrong.
        with suppress(psycopg2.OperationalError):
            holder.rollback()
        holder.close()


def test_reads_stuck_on_the_database_answer_503_within_the_statement_timeout(
        app, database_url, empty_db, example_order, authorize):
    save(app, [example_order])
    # No lock timeout here, so that it is the statement timeout that ends the wait.
    impatient = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url,
                                        "DB_STATEMENT_TIMEOUT_MS": 300, "DB_LOCK_TIMEOUT_MS": 0})
    client = authorize(impatient.test_client())
    uid = example_order["order_uid"]
    # As a long migration would: every read of the table waits behind it.
    with session_holding(database_url, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"):
        for path in (f"/order/{uid}", "/orders", "/", f"/?id={uid}"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.status_code)
            assert response.headers["Retry-After"]
        assert client.get(f"/order/{uid}").get_json()["error"] == "database_unavailable"
        assert client.get("/healthz").status_code == 200
    assert client.get(f"/order/{uid}").status_code == 200  # and back at once when it lets go


def test_an_insert_behind_another_sessions_uncommitted_insert_is_an_outage_then_stored_once(
        database_url, ingest_app, topics, run_consumer, example_order):
    from app.data import store

    uid = example_order["order_uid"]
    # The very statement another consumer's save_orders sends for the same order, left uncommitted.
    with session_holding(database_url) as holder:
        with holder.cursor() as cursor:
            cursor.execute(store._CREATE_INCOMING)
            store._copy(cursor, store._COPY_INCOMING, [store._prepare(example_order).row])
            cursor.execute(store._INSERT_ORDERS)
        produce(topics.bootstrap, topics.orders, [(uid.encode(), json.dumps(example_order).encode())])
        running = run_consumer()
        wait_until(lambda: running.consumer.waiting_since is not None, 15,
                   "the consumer gave up waiting for the lock and waited out an outage")
        assert holder.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
        assert stored_uids(ingest_app) == [] and not all_committed(topics)
    # The other session rolled back: the retry stores the order, once, and commits its offset.
    wait_until(lambda: stored_uids(ingest_app) == [uid] and all_committed(topics), 30,
               "the order was stored and its offset committed after the lock was released")
    wait_until(lambda: running.consumer.waiting_since is None, 10, "the consumer resumed")
    assert [order["order_uid"] for order in running.cached] == [uid]
    assert read_all(topics.bootstrap, topics.dlq) == []


def test_database_connections_keep_tcp_keepalives(app):
    with app.app_context():
        connection = db.engine.raw_connection()
    try:
        sock = socket.socket(fileno=os.dup(connection.driver_connection.fileno()))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
            # Noticed within minutes, not after the kernel's default of two hours idle.
            assert 0 < sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) <= 300
        finally:
            sock.close()
    finally:
        connection.close()


def test_the_openapi_document_names_the_503_of_every_read(app):
    paths = app.test_client().get("/openapi.json").get_json()["paths"]
    assert "503" in paths["/order/{order_uid}"]["get"]["responses"]
    assert "503" in paths["/orders"]["get"]["responses"]
