"""The consumer against the real Kafka and PostgreSQL, run in-process on a thread of the test."""

import json
import random
import threading

from app.data.store import get_order
from app.documents import served_form
from app.ingest.consumer import OrderConsumer
from app.ingest.sink import OrderSink
from app.seed import OrderFactory, encode
from harness.kafka import all_committed, committed_offsets, produce, read_all
from harness.postgres import database_outage
from harness.waiting import wait_until
from tests.helpers import metric, stored_uids


def headers_of(record) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def test_seeded_orders_become_readable(ingest_app, topics, run_consumer):
    orders = list(OrderFactory(seed=7).orders(300))
    produce(topics.bootstrap, topics.orders, [(o["order_uid"].encode(), encode(o)) for o in orders])
    running = run_consumer()
    wait_until(lambda: all_committed(topics), 60, "the consumer committed the whole topic")
    with ingest_app.app_context():
        for order in orders:
            assert get_order(order["order_uid"]) == served_form(order)
    assert {o["order_uid"] for o in running.cached} == {o["order_uid"] for o in orders}
    assert read_all(topics.bootstrap, topics.dlq) == []


def test_a_mixed_stream_ends_each_record_in_exactly_one_place(ingest_app, topics, run_consumer):
    rng = random.Random(42)
    valid = list(OrderFactory(seed=42).orders(120))
    conflicting = json.loads(encode(valid[3]))
    conflicting["payment"]["amount"] += 100
    nested = b'{"order_uid":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with_nul = json.loads(encode(valid[0]))
    with_nul["order_uid"] = "nul-order"
    with_nul["delivery"]["city"] = "Kiryat\u0000Mozkin"
    missing_field = json.loads(encode(valid[1]))
    missing_field["order_uid"] = "missing-field"
    del missing_field["payment"]["bank"]
    huge = json.loads(encode(valid[2]))
    huge["order_uid"] = "huge"
    huge["internal_signature"] = "x" * (1024 * 1024)
    bad = [
        (b"broken", b'{"order_uid": "broken", ', "invalid_json", None),
        (b"latin1", "{\"order_uid\": \"caf\u00e9\"}".encode("latin-1"), "invalid_json", None),
        (b"nested", nested, "invalid_json", None),
        (b"list", b"[1, 2, 3]", "invalid_order", ""),
        (b"nul-order", json.dumps(with_nul).encode(), "invalid_order", "delivery.city"),
        (b"missing-field", json.dumps(missing_field).encode(), "invalid_order", "payment.bank"),
        (b"huge", json.dumps(huge).encode(), "too_large", None),
        (conflicting["order_uid"].encode(), json.dumps(conflicting).encode(), "conflict", None),
    ]
    records = [(o["order_uid"].encode(), encode(o)) for o in valid]
    duplicates = [records[i] for i in rng.sample(range(len(records)), 15)]
    # Order matters only per key: the conflict comes after its original (same key, same partition).
    stream = records + duplicates + [(key, value) for key, value, _, _ in bad]
    produce(topics.bootstrap, topics.orders, stream)

    run_consumer()
    wait_until(lambda: all_committed(topics), 90, "the consumer committed the whole topic")

    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in valid)
    with ingest_app.app_context():
        assert get_order(valid[3]["order_uid"]) == served_form(valid[3])
    dead = read_all(topics.bootstrap, topics.dlq)
    assert len(dead) == len(bad)
    by_key = {record.key: record for record in dead}
    source_offsets = set()
    for key, value, error_type, field in bad:
        record = by_key[key]
        headers = headers_of(record)
        assert record.value == value, key
        assert headers["dlq.error.type"] == error_type, key
        assert headers["dlq.source.topic"] == topics.orders
        assert 0 <= int(headers["dlq.source.partition"]) < topics.partitions
        source_offsets.add((headers["dlq.source.partition"], headers["dlq.source.offset"]))
        detail = json.loads(headers["dlq.error.detail"])
        if field is not None:
            assert field in detail["errors"], detail
    assert len(source_offsets) == len(bad)


def test_a_record_the_database_refuses_is_isolated_and_the_rest_stored(ingest_app):
    orders = list(OrderFactory(seed=9).orders(40))
    refused = json.loads(encode(orders[17]))
    refused["items"][0]["sale"] = 250  # past validation on purpose: only the CHECK constraint catches it
    batch = [(f"record-{i}", order) for i, order in enumerate(orders[:17] + [refused] + orders[18:])]
    with ingest_app.app_context():
        result = OrderSink().store(batch)
    assert [record for record, _ in result.dead_letters] == ["record-17"]
    assert result.dead_letters[0][1].error_type == "invalid_order"
    assert len(result.stored) == 39
    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for i, o in enumerate(orders) if i != 17)


def test_a_postgresql_outage_makes_it_wait_not_skip(ingest_app, topics, run_consumer, database_url):
    orders = list(OrderFactory(seed=13).orders(400))
    keyed = [(o["order_uid"].encode(), encode(o)) for o in orders]
    produce(topics.bootstrap, topics.orders, keyed[:100])
    running = run_consumer()
    wait_until(lambda: len(stored_uids(ingest_app)) == 100, 60, "the first 100 orders were stored")

    with database_outage(database_url):
        produce(topics.bootstrap, topics.orders, keyed[100:])
        # Several failed attempts (a few seconds with backoff) before the database comes back.
        wait_until(lambda: running.consumer.retries >= 4, 30, "the consumer retried during the outage")
        committed = committed_offsets(topics.bootstrap, topics.group, topics.orders)
        assert sum(committed.values()) == 100, "nothing may be committed while the data isn't stored"
    wait_until(lambda: all_committed(topics), 90, "the consumer caught up after the outage")

    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)
    assert read_all(topics.bootstrap, topics.dlq) == []


def test_counts_stay_exact_under_redelivery(ingest_app, topics, run_consumer, monkeypatch):
    """Two consumers in one group, the second joining mid-stream: a rebalance moves partitions.
    The first consumer also fails once between storing a batch and committing it (as a process
    killed there would), so that batch is certainly delivered again. Every order is stored once,
    counted as stored at most once, and a redelivered one is counted as a duplicate."""
    orders = list(OrderFactory(seed=21).orders(1500))
    keyed = [(o["order_uid"].encode(), encode(o)) for o in orders]
    before = consumed_counts(ingest_app)
    uncommitted: list[int] = []
    real_commit = OrderConsumer._commit

    def fail_the_first_commit(self, batch):
        if not uncommitted:
            uncommitted.append(sum(len(records) for records in batch.values()))
            raise RuntimeError("the process dies between the store and the commit")
        return real_commit(self, batch)

    monkeypatch.setattr(OrderConsumer, "_commit", fail_the_first_commit)
    produce(topics.bootstrap, topics.orders, keyed[:750])
    first = run_consumer()
    wait_until(lambda: len(first.consumer.assigned_partitions()) == topics.partitions, 30,
               "the first consumer owns every partition")
    wait_until(lambda: len(stored_uids(ingest_app)) > 0, 60, "the first consumer started storing")
    second = run_consumer()
    wait_until(lambda: owns_a_share(first, second, topics.partitions), 60,
               "the group rebalanced: each consumer owns some of the partitions, together all")
    produce(topics.bootstrap, topics.orders, keyed[750:])
    wait_until(lambda: all_committed(topics), 120, "both consumers committed the whole topic")

    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)

    def moved(result: str) -> float:
        return consumed_counts(ingest_app)[result] - before[result]

    # A batch is counted just after its commit: the one whose commit never came was not counted,
    # and its orders count as duplicates when they come again. No order is counted stored twice.
    assert first.consumer.restarts == 1 and uncommitted[0] > 0
    wait_until(lambda: moved("stored") >= len(orders) - uncommitted[0], 10, "the last batch was counted")
    assert moved("stored") == len(orders) - uncommitted[0]
    assert moved("duplicate") >= uncommitted[0]
    assert moved("dead_lettered") == 0


def consumed_counts(app) -> dict[str, float]:
    """orders_consumed_total by result, as /metrics shows it."""
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {result: metric(text, "orders_consumed_total", result=result)
            for result in ("stored", "duplicate", "dead_lettered")}


def owns_a_share(first, second, partitions: int) -> bool:
    owned = [first.consumer.assigned_partitions(), second.consumer.assigned_partitions()]
    return all(owned) and not owned[0] & owned[1] and len(owned[0] | owned[1]) == partitions


def test_an_unexpected_error_restarts_the_consumer_instead_of_killing_it(ingest_app, topics):
    orders = list(OrderFactory(seed=17).orders(200))
    keyed = [(o["order_uid"].encode(), encode(o)) for o in orders]
    failures = []

    def flaky_cache(stored: list[dict]) -> None:
        if not failures:
            failures.append("raised")
            raise RuntimeError("a bug after the commit")

    consumer = OrderConsumer(ingest_app, on_stored=flaky_cache)
    thread = threading.Thread(target=consumer.run, name="test-consumer")
    thread.start()
    try:
        produce(topics.bootstrap, topics.orders, keyed[:100])
        wait_until(lambda: failures, 30, "the callback raised")
        produce(topics.bootstrap, topics.orders, keyed[100:])
        wait_until(lambda: all_committed(topics), 60, "the restarted consumer committed everything")
        assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)
        assert thread.is_alive()
        assert consumer.restarts == 1
    finally:
        consumer.stop()
        thread.join(timeout=30)


def test_a_rebalance_during_an_outage_loses_nothing_and_stalls_nothing(
        ingest_app, topics, run_consumer, database_url):
    """Faults overlap: a second consumer joins while the first is waiting out a PostgreSQL outage, so
    the group rebalances inside the wait. Afterwards every partition consumes again from its first
    unstored record: all orders stored once, none dead-lettered."""
    orders = list(OrderFactory(seed=31).orders(1200))
    keyed = [(o["order_uid"].encode(), encode(o)) for o in orders]
    produce(topics.bootstrap, topics.orders, keyed[:100])
    first = run_consumer()
    wait_until(lambda: len(stored_uids(ingest_app)) == 100, 60, "the first 100 orders were stored")

    with database_outage(database_url):
        produce(topics.bootstrap, topics.orders, keyed[100:])
        wait_until(lambda: first.consumer.retries >= 2, 30, "the first consumer is waiting out the outage")
        assert len(first.consumer.assigned_partitions()) == topics.partitions
        second = run_consumer()
        wait_until(lambda: owns_a_share(first, second, topics.partitions), 60,
                   "the group rebalanced inside the wait: each consumer owns a share of the partitions")
        retries = first.consumer.retries
        wait_until(lambda: first.consumer.retries > retries, 30, "the first consumer kept retrying after it")
        assert first.consumer.status()["state"] == "waiting out an outage"
    wait_until(lambda: all_committed(topics), 90, "both consumers caught up after the outage")

    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)
    assert read_all(topics.bootstrap, topics.dlq) == []
