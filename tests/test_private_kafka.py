"""Faults the shared broker must never see, against a Kafka broker of this module's own
(harness/private_kafka.py): log segments damaged on its disk, offsets with gaps as compaction
leaves them, and the broker killed under a running service."""

import json
import signal
import time

import pytest

from app import create_app
from app.seed import OrderFactory, encode
from config import TestConfig
from harness.kafka import (
    all_committed,
    create_topics,
    delete_topics,
    produce,
    read_all,
)
from harness.private_kafka import PrivateKafka
from harness.service import Service, service_env
from harness.waiting import wait_until
from tests.helpers import stored_uids

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def private_kafka(tmp_path_factory):
    with PrivateKafka(tmp_path_factory.mktemp("private-kafka")) as broker:
        yield broker


@pytest.fixture
def private_topics(private_kafka):
    created = create_topics(private_kafka.bootstrap)
    yield created
    if private_kafka.running:
        delete_topics(created)


@pytest.fixture
def private_app(database_url, private_topics, empty_db):
    return create_app(TestConfig, {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": private_topics.bootstrap,
        "KAFKA_TOPIC": private_topics.orders,
        "KAFKA_DLQ_TOPIC": private_topics.dlq,
        "KAFKA_GROUP_ID": private_topics.group,
        "CONSUMER_BATCH_WAIT_MS": 100,
        "CONSUMER_MAX_BACKOFF_S": 1,
    })


def keyed(orders: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(o["order_uid"].encode(), encode(o)) for o in orders]


def consumer_states(service: Service, polls: int = 6) -> set[str]:
    states = set()
    for _ in range(polls):
        status, _, body = service.get("/readyz")
        if status:
            states.add(json.loads(body)["consumer"]["state"])
    return states


def test_a_sigterm_while_kafka_is_down_stops_the_service_in_time_and_loses_nothing(
        private_kafka, private_topics, private_app, database_url, tmp_path):
    """kafka-python's poll() and commit() wait for the group coordinator without a bound: with the
    broker gone, a stop must still end every worker well within the graceful timeout, /readyz must
    not call a consumer "in group", and what was not committed is redelivered and stored once."""
    graceful_s = 15
    orders = list(OrderFactory(seed=85).orders(300))
    env = service_env(database_url, private_topics, GUNICORN_GRACEFUL_TIMEOUT=str(graceful_s))
    service = Service(env, tmp_path / "service.log").start()
    try:
        produce(private_topics.bootstrap, private_topics.orders, keyed(orders[:200]))
        wait_until(lambda: all_committed(private_topics), 60, "the service consumed the first orders")
        private_kafka.stop()
        wait_until(lambda: consumer_states(service) == {"waiting for Kafka"}, 60,
                   "every worker's consumer says it waits for Kafka")
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.wait_exit(timeout_s=graceful_s + 30) == 0
        stopped_in = time.monotonic() - started
    finally:
        service.kill()
    assert stopped_in < graceful_s, f"the service took {stopped_in:.1f} s to stop"
    assert "did not stop within" not in service.log()

    private_kafka.start()
    produce(private_topics.bootstrap, private_topics.orders, keyed(orders[200:]))
    again = Service(env, tmp_path / "again.log").start()
    try:
        wait_until(lambda: all_committed(private_topics), 90, "the restarted service consumed the rest")
    finally:
        again.kill()
    assert sorted(stored_uids(private_app)) == sorted(o["order_uid"] for o in orders)
    assert read_all(private_topics.bootstrap, private_topics.dlq) == []
