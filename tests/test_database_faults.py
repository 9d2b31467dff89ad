"""Faults on PostgreSQL's side, against the real server and Kafka: a database that drifted from the
code (a constraint every new row fails) makes the consumer wait, not empty the stream into the
dead-letter topic; one order it refuses among stored ones is dead-lettered; a batch slower than the
statement timeout is split, and only an order too slow on its own is an outage."""

import json
import logging
from contextlib import contextmanager

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from app import create_app
from app.seed import OrderFactory, encode
from config import TestConfig
from harness.kafka import all_committed, committed_offsets, produce, read_all
from harness.postgres import admin_dsn
from harness.waiting import wait_until
from tests.conftest import RunningConsumer, ingest_settings
from tests.helpers import metric, stored_uids


@contextmanager
def schema_change(database_url: str, apply: str, undo: str):
    """A change to the test database's schema (as a migration ahead of the code would make),
    undone when the block ends, whatever happened in it."""
    def run(statement: str) -> None:
        connection = psycopg2.connect(admin_dsn(database_url, make_url(database_url).database))
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    run(apply)
    try:
        yield run
    finally:
        run(undo)


def keyed(orders: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(o["order_uid"].encode(), encode(o)) for o in orders]


def breaker_metric(app, constraint: str) -> float:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return metric(text, "orders_consumer_breaker_open", constraint=constraint)


def test_a_constraint_every_new_row_fails_makes_the_consumer_wait_not_dead_letter(
        ingest_app, topics, run_consumer, database_url, caplog):
    orders = list(OrderFactory(seed=101).orders(260))
    produce(topics.bootstrap, topics.orders, keyed(orders[:60]))
    running = run_consumer()
    wait_until(lambda: all_committed(topics), 60, "the first orders were stored")
    committed_before = sum(committed_offsets(topics.bootstrap, topics.group, topics.orders).values())

    with caplog.at_level(logging.ERROR, logger="app.ingest.sink"), schema_change(
            database_url, "ALTER TABLE order_items ADD CONSTRAINT drift CHECK (false) NOT VALID",
            "ALTER TABLE order_items DROP CONSTRAINT IF EXISTS drift") as run:
        produce(topics.bootstrap, topics.orders, keyed(orders[60:]))
        wait_until(lambda: running.consumer.retries >= 3, 60, "the consumer retried the refused batch")
        status = running.consumer.status()
        assert status["state"] == "waiting out an outage"
        assert status["reason"] == "PostgreSQL refuses orders that passed validation"
        assert status["constraint"] == "drift"
        assert breaker_metric(ingest_app, "drift") == 1
        assert any('"drift"' in line and "none is dead-lettered" in line for line in caplog.messages)
        assert read_all(topics.bootstrap, topics.dlq) == []
        committed = committed_offsets(topics.bootstrap, topics.group, topics.orders)
        assert sum(committed.values()) == committed_before
        run("ALTER TABLE order_items DROP CONSTRAINT drift")
        wait_until(lambda: all_committed(topics), 90, "the orders were stored once PostgreSQL took them")

    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)
    assert read_all(topics.bootstrap, topics.dlq) == []
    wait_until(lambda: running.consumer.waiting_since is None, 10, "the consumer resumed")
    assert breaker_metric(ingest_app, "drift") == 0


def test_one_order_postgresql_refuses_among_stored_ones_is_dead_lettered(ingest_app, topics, run_consumer):
    """A value past validation that only the database's own constraint catches (an item's sale of
    250%): one refusal amid accepted orders is the record's fault."""
    orders = list(OrderFactory(seed=102).orders(120))
    odd = json.loads(encode(orders[50]))
    odd["items"][0]["sale"] = 250
    stream = keyed(orders[:50]) + [(odd["order_uid"].encode(), json.dumps(odd).encode())] + keyed(orders[51:])
    produce(topics.bootstrap, topics.orders, stream)
    running = run_consumer()
    wait_until(lambda: all_committed(topics), 60, "the consumer committed the whole topic")

    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for i, o in enumerate(orders) if i != 50)
    (dead,) = read_all(topics.bootstrap, topics.dlq)
    assert dead.key == odd["order_uid"].encode()
    assert dict(dead.headers)["dlq.error.type"] == b"invalid_order"
    assert running.consumer.retries == 0 and running.consumer.waiting_since is None


@pytest.fixture
def slow_app(database_url, topics, empty_db):
    """ingest_app with a statement timeout of 500 ms."""
    return create_app(TestConfig, ingest_settings(database_url, topics, DB_STATEMENT_TIMEOUT_MS=500))


# Every item row costs 20 ms: a batch of 100 one-item orders takes 2 s, four times the timeout;
# an order takes 20 ms, unless it has 40 items (800 ms).
SLOW_ITEMS = ("CREATE OR REPLACE FUNCTION slow_item() RETURNS trigger LANGUAGE plpgsql AS "
              "$$ BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$; "
              "CREATE TRIGGER slow_item BEFORE INSERT ON order_items "
              "FOR EACH ROW EXECUTE FUNCTION slow_item()")
FAST_ITEMS = "DROP TRIGGER IF EXISTS slow_item ON order_items; DROP FUNCTION IF EXISTS slow_item()"


def test_a_batch_slower_than_the_statement_timeout_is_split_and_stored(slow_app, topics, database_url):
    orders = list(OrderFactory(seed=103).orders(100, max_items=1))
    heavy = next(OrderFactory(seed=104).orders(1, min_items=40, max_items=40))
    with schema_change(database_url, SLOW_ITEMS, FAST_ITEMS) as run:
        produce(topics.bootstrap, topics.orders, keyed(orders))
        running = RunningConsumer(slow_app)
        try:
            wait_until(lambda: all_committed(topics), 90, "the consumer stored the batch in smaller parts")
            assert running.consumer.retries == 0
            # One order slower than the timeout on its own: that is an outage, not a dead letter.
            produce(topics.bootstrap, topics.orders, keyed([heavy]))
            wait_until(lambda: running.consumer.retries >= 2, 60, "the consumer waits out the slow order")
            status = running.consumer.status()
            assert status["reason"] == "PostgreSQL is slower than DB_STATEMENT_TIMEOUT_MS for one order"
            run(FAST_ITEMS)
            wait_until(lambda: all_committed(topics), 60, "the order was stored once the database was fast")
        finally:
            running.stop()
    assert sorted(stored_uids(slow_app)) == sorted(o["order_uid"] for o in [*orders, heavy])
    assert read_all(topics.bootstrap, topics.dlq) == []
