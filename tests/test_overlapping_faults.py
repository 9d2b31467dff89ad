"""Faults that overlap, against the real service under gunicorn, PostgreSQL and Kafka: a restart of
the whole instance in the middle of a PostgreSQL outage loses nothing and stores nothing twice."""

import signal

import pytest

from harness.kafka import all_committed, produce, read_all
from harness.postgres import database_outage
from harness.service import Service, service_env
from harness.waiting import wait_until
from tests.helpers import consumer_states, metric, stored_uids

pytestmark = pytest.mark.slow


def consumed(service: Service) -> dict[str, float]:
    """orders_consumed_total by result, all of the instance's workers added up."""
    text = service.get("/metrics")[2].decode()
    return {result: metric(text, "orders_consumed_total", result=result)
            for result in ("stored", "duplicate", "dead_lettered")}


def test_a_restart_during_an_outage_loses_nothing(ingest_app, topics, database_url, tmp_path):
    from app.seed import OrderFactory, encode

    orders = list(OrderFactory(seed=91).orders(1200))
    keyed = [(o["order_uid"].encode(), encode(o)) for o in orders]
    env = service_env(database_url, topics)
    first = Service(env, tmp_path / "first.log").start()
    second = None
    try:
        produce(topics.bootstrap, topics.orders, keyed[:400])
        wait_until(lambda: len(stored_uids(ingest_app)) == 400, 60, "the first 400 orders were stored")
        with database_outage(database_url):
            produce(topics.bootstrap, topics.orders, keyed[400:])
            wait_until(lambda: "waiting out an outage" in consumer_states(first), 30,
                       "the first instance waits out the outage")
            # Nothing can be stored during the outage: the first instance's counts are final.
            stored_by_first = consumed(first)
            first.signal(signal.SIGTERM)
            assert first.wait_exit(timeout_s=30) == 0, "a stop during an outage must still be clean"
            second = Service(env, tmp_path / "second.log").start()
            wait_until(lambda: "waiting out an outage" in consumer_states(second), 30,
                       "the restarted instance waits out the same outage")
        wait_until(lambda: all_committed(topics), 120, "the restarted instance caught up after the outage")
        assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)
        assert read_all(topics.bootstrap, topics.dlq) == []
        # The table cannot hold an order twice (its UNIQUE key), so only the counters can tell
        # whether one was stored twice: each order counted stored once, by one of the instances.
        # (A batch is counted just after its commit.)
        wait_until(lambda: consumed(second)["stored"] + stored_by_first["stored"] >= len(orders), 10,
                   "the last batch was counted")
        stored_by_second = consumed(second)
        assert stored_by_first["stored"] == 400
        assert stored_by_first["stored"] + stored_by_second["stored"] == len(orders)
        assert stored_by_first["dead_lettered"] + stored_by_second["dead_lettered"] == 0
    finally:
        for service in (first, second):
            if service is not None:
                service.kill()
