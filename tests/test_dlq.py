"""`flask dlq` against the real Kafka and PostgreSQL: dead letters made by the real consumer, and
hostile ones written straight to the dead-letter topic."""

import json
import re
import time

from kafka import TopicPartition
from kafka.admin import NewTopic

from app import create_app
from app.data.store import get_order
from app.documents import served_form
from app.kafka_clients import new_producer
from app.seed import OrderFactory, encode
from config import TestConfig
from harness.kafka import admin, all_committed, end_offsets, produce, read_all
from harness.kafka import settings as kafka_settings
from harness.postgres import execute_as_owner
from harness.waiting import wait_until

ESC = "\x1b"


def dlq(runner, *args: str):
    """Run `flask dlq …` with `runner` (the `runner` fixture, or another app's test_cli_runner())."""
    return runner.invoke(args=["dlq", *args])


def headers_of(record) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def wait_for_dead_letters(topics, count: int) -> list:
    return wait_until(lambda: (lambda dead: dead if len(dead) >= count else None)(
        read_all(topics.bootstrap, topics.dlq)), 60, f"{count} dead letters")


def republish(topics, record) -> None:
    """Publish a dead letter again, byte for byte (what a consumer restart can do)."""
    producer = new_producer(kafka_settings(topics.bootstrap), acks="all",
                             max_request_size=3 * 1024 * 1024)
    try:
        producer.send(topics.dlq, key=record.key, value=record.value, headers=record.headers).get(30)
    finally:
        producer.close()


class _NotUtf8Name(str):
    """A header name kafka-python writes as bytes that are not UTF-8 (it calls .encode on it)."""

    def encode(self, *_args, **_kwargs) -> bytes:
        return b"dlq.\xff"


def send_unchecked(topics, key, value, headers) -> None:
    """KafkaProducer.send without its check: the Java client can write a null key with a null
    value; kafka-python's send() refuses to."""
    producer = new_producer(kafka_settings(topics.bootstrap), acks="all", retries=5)
    try:
        producer._wait_on_metadata(topics.dlq, 10)
        future, _, _ = producer._accumulator.append(TopicPartition(topics.dlq, 0), int(time.time() * 1000),
                                                    key, value, headers, 10_000)
        producer.flush(timeout=30)
        future.get(30)
    finally:
        producer.close()


def hostile_stream(orders):
    """One record of each error type, the contract's way (keyed by order_uid)."""
    missing_field = json.loads(encode(orders[1]))
    missing_field["order_uid"] = "missing-field"
    del missing_field["payment"]["bank"]
    conflicting = json.loads(encode(orders[0]))
    conflicting["payment"]["amount"] += 100
    huge = json.loads(encode(orders[2]))
    huge["order_uid"] = "huge"
    huge["internal_signature"] = "x" * (1024 * 1024)
    return [
        (b"broken" + ESC.encode() + b"[31m", b'{"order_uid": "broken\x1b[2J\x07", \xff', "invalid_json"),
        (b"missing-field", json.dumps(missing_field).encode(), "invalid_order"),
        (conflicting["order_uid"].encode(), json.dumps(conflicting).encode(), "conflict"),
        (b"huge", json.dumps(huge).encode(), "too_large"),
    ]


def test_stats_and_show_count_each_source_record_once(runner, topics, run_consumer):
    orders = list(OrderFactory(seed=31).orders(20))
    bad = hostile_stream(orders)
    produce(topics.bootstrap, topics.orders, [(o["order_uid"].encode(), encode(o)) for o in orders])
    produce(topics.bootstrap, topics.orders, [(key, value) for key, value, _ in bad])
    run_consumer()
    wait_until(lambda: all_committed(topics), 60, "the consumer committed the whole topic")
    dead = wait_for_dead_letters(topics, len(bad))
    republish(topics, next(r for r in dead if headers_of(r)["dlq.error.type"] == "invalid_order"))

    result = dlq(runner, "stats")
    assert result.exit_code == 0, result.output
    assert f"{topics.dlq}: 5 dead letters, 4 source records, 1 duplicates" in result.output
    rows = dict(re.findall(r"^  (\w+) +(\d+ +\d+)$", result.output, re.MULTILINE))
    assert {name: row.split() for name, row in rows.items()} == {
        "conflict": ["1", "0"], "invalid_json": ["1", "0"], "invalid_order": ["1", "1"],
        "too_large": ["1", "0"]}
    assert re.search(r"^oldest: \d{4}-\d\d-\d\dT[\d:.]+Z \(partition 0, offset 0\)$", result.output, re.M)
    assert re.search(r"^newest: .*\(partition 0, offset 4\)$", result.output, re.M)
    as_json = json.loads(dlq(runner, "stats", "--json").output)
    assert as_json["by_type"] == {"conflict": 1, "invalid_json": 1, "invalid_order": 1, "too_large": 1}
    assert as_json["duplicates_by_type"] == {"invalid_order": 1}

    result = dlq(runner, "show", "--type", "invalid_order", "--json")
    assert result.exit_code == 0, result.output
    [shown] = [json.loads(line) for line in result.output.splitlines()]
    assert shown["copies"] == 2 and shown["key"] == "missing-field"
    assert shown["source"]["topic"] == topics.orders
    assert "payment.bank" in json.loads(shown["detail"])["errors"]
    assert shown["value_start"].startswith('{"order_uid": "missing-field"')
    assert shown["value_start"].endswith("…")

    result = dlq(runner, "show", "--key", orders[0]["order_uid"])
    assert result.exit_code == 0, result.output
    assert " conflict " in result.output and "1 of 1 matching source records shown" in result.output
    assert "already stored with different content" in result.output

    result = dlq(runner, "show", "--type", "invalid_json")
    assert ESC not in result.output and "\x07" not in result.output
    assert "key:    broken\\x1b[31m" in result.output
    assert 'value:  {"order_uid": "broken\\x1b[2J\\x07", \\xff' in result.output
    result = dlq(runner, "show", "--limit", "2")
    assert "2 of 4 matching source records shown" in result.output


def test_replay_stores_the_fixed_conflict_and_the_invalid_order_comes_back(ingest_app, runner, topics,
                                                                             database_url, run_consumer):
    orders = list(OrderFactory(seed=32).orders(10))
    _, (invalid_key, invalid_value, _), (conflict_key, conflict_value, _), _ = hostile_stream(orders)
    produce(topics.bootstrap, topics.orders, [(o["order_uid"].encode(), encode(o)) for o in orders])
    produce(topics.bootstrap, topics.orders, [(invalid_key, invalid_value), (conflict_key, conflict_value)])
    run_consumer()
    wait_until(lambda: all_committed(topics), 60, "the consumer committed the whole topic")
    dead = wait_for_dead_letters(topics, 2)
    conflict = next(r for r in dead if r.key == conflict_key)
    republish(topics, conflict)  # the same source record dead-lettered twice
    source_end = sum(end_offsets(topics.bootstrap, topics.orders).values())

    result = dlq(runner, "replay", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would replay 2 dead letters" in result.output
    assert "not replayed: 1 copies of a source record" in result.output
    assert sum(end_offsets(topics.bootstrap, topics.orders).values()) == source_end

    # The operator's fix: the stored order the conflict clashed with is removed.
    execute_as_owner(database_url, "DELETE FROM orders WHERE order_uid = %(uid)s",
                     {"uid": conflict_key.decode()})
    result = dlq(runner, "replay", "--type", "conflict")
    assert result.exit_code == 0, result.output
    assert "replayed 1 of 1 dead letters" in result.output
    fixed = json.loads(conflict_value)
    with ingest_app.app_context():
        wait_until(lambda: get_order(fixed["order_uid"]) == served_form(fixed), 60,
                   "the replayed conflict was stored")

    result = dlq(runner, "replay")
    assert result.exit_code == 0, result.output
    assert "replayed 1 of 1 dead letters" in result.output and "invalid_order 1" in result.output
    back = wait_for_dead_letters(topics, 4)[-1]
    assert back.key == invalid_key and back.value == invalid_value
    assert headers_of(back)["dlq.error.type"] == "invalid_order"
    assert "payment.bank" in json.loads(headers_of(back)["dlq.error.detail"])["errors"]
    assert headers_of(back)["dlq.source.topic"] == topics.orders

    replayed = [r for r in read_all(topics.bootstrap, topics.orders) if r.headers]
    assert sorted(headers_of(r)["dlq.replayed.from"] for r in replayed) == sorted(
        "/".join(headers_of(d)[f"dlq.source.{part}"] for part in ("topic", "partition", "offset"))
        for d in dead)
    source_end = sum(end_offsets(topics.bootstrap, topics.orders).values())
    for _ in range(2):  # it stays left for --again, run after run
        result = dlq(runner, "replay")
        assert result.exit_code == 0, result.output
        assert "replayed 0 of 0 dead letters" in result.output
        assert "not replayed: 1 came back after an earlier replay" in result.output
    assert sum(end_offsets(topics.bootstrap, topics.orders).values()) == source_end

    # After a second fix (none here: it comes back once more), --again replays it.
    result = dlq(runner, "replay", "--again")
    assert result.exit_code == 0, result.output
    assert "replayed 1 of 1 dead letters" in result.output
    assert sum(end_offsets(topics.bootstrap, topics.orders).values()) == source_end + 1
    again = wait_for_dead_letters(topics, 5)[-1]
    assert (again.key, again.value) == (invalid_key, invalid_value)
    result = dlq(runner, "replay")
    assert "replayed 0 of 0 dead letters" in result.output
    assert "not replayed: 1 came back after an earlier replay" in result.output


def test_hostile_dead_letters_are_shown_escaped_and_never_replayed_blindly(runner, topics):
    source = [("dlq.source.topic", topics.orders.encode()), ("dlq.source.partition", b"0")]
    send_unchecked(topics, None, None, [("dlq.error.type", b"invalid_json"), *source,
                                        ("dlq.source.offset", b"1")])
    send_unchecked(topics, b"k\xff", b"\x00\x1b]0;owned\x07", [("dlq.error.detail", b"\xfe\x1b[2J"),
                                                             *source, ("dlq.source.offset", b"2")])
    send_unchecked(topics, b"no-coordinates", b"{}", [("dlq.error.type", b"invalid_\xffjson")])

    result = dlq(runner, "stats")
    assert result.exit_code == 0, result.output
    assert "3 dead letters, 3 source records, 0 duplicates" in result.output
    assert "without source coordinates (each counted as its own source): 1" in result.output
    assert "(missing)" in result.output and "invalid_\\xffjson" in result.output

    result = dlq(runner, "show")
    assert result.exit_code == 0, result.output
    assert ESC not in result.output and "\x00" not in result.output and "\x07" not in result.output
    assert "key:    k\\xff" in result.output and "value:  \\x00\\x1b]0;owned\\x07" in result.output
    assert "detail: \\xfe\\x1b[2J" in result.output and "key:    (null)" in result.output

    result = dlq(runner, "replay")
    assert result.exit_code == 0, result.output
    assert "replayed 1 of 1 dead letters" in result.output
    assert "not replayed: 1 without a value" in result.output
    assert "not replayed: 1 without source coordinates" in result.output
    [replayed] = read_all(topics.bootstrap, topics.orders)
    assert (replayed.key, replayed.value) == (b"k\xff", b"\x00\x1b]0;owned\x07")
    assert replayed.headers == [("dlq.replayed.from", f"{topics.orders}/0/2".encode())]
    assert "replayed 0 of 0" in dlq(runner, "replay").output


def test_dead_letters_without_the_records_value_or_key_are_reported_never_replayed(runner, topics):
    """A dead letter of a null record, or one whose value or key was too large to keep: replaying
    it would write a tombstone (a deletion, on a compacted topic) or a record that is not the one
    that failed. Only the last one here is whole."""
    def coordinates(offset: int) -> list[tuple[str, bytes]]:
        return [("dlq.source.topic", topics.orders.encode()), ("dlq.source.partition", b"0"),
                ("dlq.source.offset", str(offset).encode())]

    send_unchecked(topics, b"big", None, [("dlq.error.type", b"too_large"), ("dlq.dropped", b"value"),
                                          *coordinates(1)])
    send_unchecked(topics, b"", None, [("dlq.error.type", b"invalid_json"), *coordinates(2)])
    send_unchecked(topics, b"", b"{}", [("dlq.error.type", b"invalid_json"), ("dlq.dropped", b"key"),
                                        *coordinates(3)])
    send_unchecked(topics, b"whole", b"{}", [("dlq.error.type", b"invalid_order"), *coordinates(4)])

    result = dlq(runner, "replay")
    assert result.exit_code == 0, result.output
    assert "replayed 1 of 1 dead letters" in result.output
    assert "not replayed: 2 without a value" in result.output
    assert "not replayed: 1 without the record's key" in result.output
    [replayed] = read_all(topics.bootstrap, topics.orders)
    assert (replayed.key, replayed.value) == (b"whole", b"{}")


def test_a_header_name_that_is_not_utf8_is_read_not_fatal(runner, topics):
    send_unchecked(topics, b"k", b"v", [(_NotUtf8Name("x"), b"1")])
    result = dlq(runner, "stats")
    assert result.exit_code == 0, result.output
    assert "1 dead letters" in result.output


def test_unreachable_kafka_and_a_missing_topic_are_clear_errors(database_url, topics):
    down = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url,
                                   "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    for command in (["stats"], ["show"], ["replay", "--dry-run"]):
        result = dlq(down.test_cli_runner(), *command)
        assert result.exit_code == 1, command
        assert "Kafka is not reachable at 127.0.0.1:1" in result.output and "make infra" in result.output

    missing = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url,
                                      "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap,
                                      "KAFKA_TOPIC": topics.orders,
                                      "KAFKA_DLQ_TOPIC": topics.dlq + "-missing"})
    result = dlq(missing.test_cli_runner(), "stats")
    assert result.exit_code == 1
    assert f"topic {topics.dlq}-missing does not exist" in result.output
    assert "KAFKA_DLQ_TOPIC" in result.output
    # Asking did not create it (the broker auto-creates topics a client names in a metadata request).
    assert f"topic {topics.dlq}-missing does not exist" in dlq(missing.test_cli_runner(), "stats").output

    result = dlq(missing.test_cli_runner(), "show", "--limit", "0")
    assert result.exit_code == 2
    loop = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "KAFKA_TOPIC": topics.dlq,
                                   "KAFKA_DLQ_TOPIC": topics.dlq})
    result = dlq(loop.test_cli_runner(), "replay")
    assert result.exit_code == 2 and "both" in result.output
    assert "Exit codes: 0 done; 1 Kafka unreachable" in dlq(down.test_cli_runner(), "replay", "--help").output


def test_a_replay_the_broker_refuses_is_reported_and_not_remembered(database_url, topics):
    small = topics.orders + "-small"
    client = admin(topics.bootstrap)
    client.create_topics([NewTopic(small, 1, 1, topic_configs={"max.message.bytes": "1000"})])
    client.close()
    try:
        app = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url,
                                      "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap, "KAFKA_TOPIC": small,
                                      "KAFKA_DLQ_TOPIC": topics.dlq, "KAFKA_GROUP_ID": topics.group})
        coordinates = [("dlq.error.type", b"invalid_order"), ("dlq.source.topic", small.encode()),
                       ("dlq.source.partition", b"0")]
        send_unchecked(topics, b"big", b"x" * 5000, [*coordinates, ("dlq.source.offset", b"7")])
        send_unchecked(topics, b"fits", b"{}", [*coordinates, ("dlq.source.offset", b"8")])
        # The second run tries the refused one again (it was not remembered), and only that one.
        for summary in ("replayed 1 of 2 dead letters", "replayed 0 of 1 dead letters"):
            result = dlq(app.test_cli_runner(), "replay")
            assert result.exit_code == 3, result.output
            assert summary in result.output
            assert f"{small}/0/7" in result.output and "run again" in result.output
        assert [r.key for r in read_all(topics.bootstrap, small)] == [b"fits"]
    finally:
        client = admin(topics.bootstrap)
        client.delete_topics([small])
        client.close()
