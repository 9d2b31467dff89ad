"""`flask seed-orders` against the real Kafka, and its orders through the real consumer into
PostgreSQL and out of the HTTP API."""

import re
import time

from app import create_app
from app.kafka_clients import COMMAND_KAFKA_WAIT_S
from config import TestConfig
from harness.kafka import all_committed, end_offsets, read_all
from harness.waiting import wait_until


def seed(runner, *args: str):
    return runner.invoke(args=["seed-orders", *args])


def test_seeded_orders_are_served_and_the_bad_ones_dead_lettered(
        ingest_app, runner, topics, run_consumer, tmp_path, authorize):
    ids_file = tmp_path / "ids.txt"
    result = seed(runner, "--count", "400", "--seed", "7", "--invalid-ratio", "0.1",
                  "--duplicate-ratio", "0.1", "--ids-file", str(ids_file), "--quiet")
    assert result.exit_code == 0, result.output
    assert f"to {topics.orders}" in result.output
    counts = re.search(r"(\d+) valid, (\d+) duplicates, (\d+) invalid", result.output)
    valid, duplicates, invalid = (int(group) for group in counts.groups())
    assert valid + duplicates + invalid == 400 and invalid > 0 and duplicates > 0
    ids = ids_file.read_text().split()
    assert len(ids) == len(set(ids)) == valid

    run_consumer()
    wait_until(lambda: all_committed(topics), 90, "the consumer committed the seeded records")
    client = authorize(ingest_app.test_client())
    for order_uid in ids:
        response = client.get(f"/order/{order_uid}")
        assert response.status_code == 200, order_uid
        assert response.get_json()["payment"]["transaction"] == order_uid
    assert len(read_all(topics.bootstrap, topics.dlq)) == invalid


def test_the_same_seed_produces_the_same_orders(runner, tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    for path in (first, second):
        result = seed(runner, "--count", "50", "--seed", "3", "--ids-file", str(path), "--quiet")
        assert result.exit_code == 0, result.output
    assert first.read_text() == second.read_text()


def test_an_unreachable_kafka_is_a_clear_error(database_url):
    app = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url,
                                  "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    started = time.monotonic()
    result = seed(app.test_cli_runner(), "--count", "5", "--quiet", "--kafka-wait", "2")
    assert time.monotonic() - started < COMMAND_KAFKA_WAIT_S, "it waited the default, not --kafka-wait"
    assert result.exit_code == 1
    assert "Kafka is not reachable at 127.0.0.1:1" in result.output
    assert "make infra" in result.output


def test_bad_options_are_refused_before_anything_is_sent(runner, topics):
    result = seed(runner, "--invalid-ratio", "0.7", "--duplicate-ratio", "0.6")
    assert result.exit_code == 2 and "add up to more than 1" in result.output
    result = seed(runner, "--count", "0")
    assert result.exit_code == 2
    assert sum(end_offsets(topics.bootstrap, topics.orders).values()) == 0
