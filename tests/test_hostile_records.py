"""Records built to hurt the consumer, against the real Kafka and PostgreSQL: each one ends in the
dead-letter topic with its reason, costs only itself, and the orders around it are stored."""

import json

from app.seed import OrderFactory, encode
from harness.kafka import all_committed, produce, produce_raw, read_all
from harness.waiting import wait_until
from tests.helpers import stored_uids

MIB = 1024 * 1024


def coordinates(record) -> tuple[int, int]:
    headers = dict(record.headers)
    return int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"])


def hostile_records(example: dict) -> dict[bytes, tuple[bytes | None, list, str]]:
    """key -> (value, headers, the dlq.error.type it must get)."""
    valid = encode(example)
    return {
        b"surrogate-key": (b'{"\\ud800":0}', [], "invalid_order"),
        b"nested-surrogate-key": (b'{"delivery":{"\\udfff":1}}', [], "invalid_order"),
        # Its unknown key comes back in the detail: a dead letter that once outgrew the producer.
        b"huge-detail": (b'{"' + b"a" * 1_048_400 + b'":0}', [], "invalid_order"),
        b"two-mib": (b"x" * 2_097_000, [], "too_large"),
        # Quadratic in Cerberus: minutes of CPU before the shape checks.
        b"empty-items": (json.dumps({**example, "items": [{}] * 3000}).encode(), [], "invalid_order"),
        b"unknown-keys": (json.dumps({**example, **{f"k{i}": 0 for i in range(2000)}}).encode(), [],
                          "invalid_order"),
        b"bad-header-key": (valid, [(b"\xff\xfetrace", b"1")], "invalid_record"),
    }


def test_hostile_records_cost_only_themselves_even_during_a_rebalance(
        ingest_app, topics, run_consumer, example_order):
    hostile = hostile_records(example_order)
    orders = list(OrderFactory(seed=77).orders(300))
    first = run_consumer()
    # Kafka-python refuses to send a record with neither key nor value; other clients can.
    produce_raw(topics.bootstrap, topics.orders,
                [(None, None, [])] + [(key, value, headers) for key, (value, headers, _) in hostile.items()])
    produce(topics.bootstrap, topics.orders, [(o["order_uid"].encode(), encode(o)) for o in orders[:150]])
    second = run_consumer()  # the group rebalances while the hostile records are in flight
    produce(topics.bootstrap, topics.orders, [(o["order_uid"].encode(), encode(o)) for o in orders[150:]])
    wait_until(lambda: all_committed(topics), 120, "the consumers committed the whole topic")

    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)
    assert first.consumer.restarts == 0 and second.consumer.restarts == 0
    dead = read_all(topics.bootstrap, topics.dlq)
    # At least once: a rebalance may publish a dead letter twice, under the same source coordinates.
    by_source = {coordinates(record): record for record in dead}
    assert len(by_source) == len(hostile) + 1
    by_key = {record.key: record for record in by_source.values()}
    for key, (value, _, error_type) in hostile.items():
        record = by_key[key]
        headers = dict(record.headers)
        assert record.value == value, key
        assert headers["dlq.error.type"].decode() == error_type, key
        assert len(headers["dlq.error.detail"]) <= 4096, key
        json.loads(headers["dlq.error.detail"])
    null_record = by_key[b""]
    assert null_record.value is None
    assert dict(null_record.headers)["dlq.error.type"] == b"invalid_json"


def produce_to_partition(topics, records: list[tuple[bytes | None, bytes | None, list]], partition: int,
                         compression: str | None = None) -> None:
    """Records into one partition, in order, each in its own batch; the producer accepts records
    of up to 16 MiB before compression (the broker's limit applies to the compressed batch)."""
    from app.kafka_clients import new_producer
    from harness.kafka import settings as kafka_settings

    producer = new_producer(kafka_settings(topics.bootstrap), acks="all", compression_type=compression,
                            max_request_size=16 * MIB, buffer_memory=64 * MIB)
    try:
        for key, value, headers in records:
            producer.send(topics.orders, key=key, value=value, headers=headers,
                          partition=partition).get(timeout=60)
    finally:
        producer.close()


def test_records_whose_keys_or_headers_outgrow_a_dead_letter_are_dead_lettered_once(
        ingest_app, topics, run_consumer):
    """gzip gets a 4 MiB key or a 4 MiB traceparent past the broker's 2 MiB limit, which applies to
    the compressed batch. The dead letter keeps what fits (the value first, then the key) and says
    what it dropped; the orders behind them in the same partition are stored and committed."""
    import random

    incompressible = random.Random(5).randbytes(900 * 1024)
    hostile = {
        # (key, value, headers) -> dlq.error.type, what the dead letter dropped
        "key": ((b"k" * 4 * MIB, b"not json", []), "invalid_json", b"key"),
        "key and value": ((b"k" * 4 * MIB, b"[" * 3 * MIB, []), "too_large", b"key,value"),
        "value kept": ((b"k" * 4 * MIB, b"{" + incompressible, []), "invalid_json", b"key"),
        "traceparent": ((b"tp", b"[]", [("traceparent", b"0" * 4 * MIB)]), "invalid_order", None),
    }
    produce_to_partition(topics, [record for record, _, _ in hostile.values()], partition=2,
                         compression="gzip")
    orders = list(OrderFactory(seed=81).orders(20))
    # A valid order with a 4 MiB key and a 4 MiB traceparent is stored like any other.
    produce_to_partition(topics, [(b"u" * 4 * MIB, encode(orders[0]), [("traceparent", b"1" * 4 * MIB)])]
                         + [(o["order_uid"].encode(), encode(o), []) for o in orders[1:]], partition=2,
                         compression="gzip")
    running = run_consumer()
    wait_until(lambda: all_committed(topics), 60, "the consumer committed the whole topic")

    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)
    assert running.consumer.restarts == 0 and running.consumer.waiting_since is None
    dead = read_all(topics.bootstrap, topics.dlq)
    assert len(dead) == len(hostile)  # once each: no retry published a second copy
    for record, (name, ((key, value, _), error_type, dropped)) in zip(
            sorted(dead, key=coordinates), hostile.items(), strict=True):
        headers = dict(record.headers)
        assert headers["dlq.error.type"].decode() == error_type, name
        assert headers.get("dlq.dropped") == dropped, name
        assert record.key == (b"" if dropped and b"key" in dropped else key), name
        assert record.value == (None if dropped and b"value" in dropped else value), name
        assert "traceparent" not in headers, name  # 4 MiB is no traceparent
        detail = headers["dlq.error.detail"].decode()
        json.loads(detail)
        for part in (dropped or b"").decode().split(","):
            if part:
                assert f"the record's {part} (" in detail, (name, detail)


def test_an_unexpected_error_on_one_record_costs_that_record_only(
        ingest_app, topics, run_consumer, monkeypatch):
    """A bug that one record triggers (injected here: nothing known raises any more) dead-letters
    that record as `unprocessable`; the consumer does not restart and the rest is stored."""
    import app.ingest.consumer as consumer_module

    real_decode = consumer_module.decode_order

    def decode_with_a_bug(value):
        if value == b"trigger":
            raise KeyError("a bug")
        return real_decode(value)

    monkeypatch.setattr(consumer_module, "decode_order", decode_with_a_bug)
    orders = list(OrderFactory(seed=78).orders(100))
    records = [(o["order_uid"].encode(), encode(o)) for o in orders]
    produce(topics.bootstrap, topics.orders, records[:50] + [(b"bug", b"trigger")] + records[50:])
    running = run_consumer()
    wait_until(lambda: all_committed(topics), 60, "the consumer committed the whole topic")

    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)
    assert running.consumer.restarts == 0
    (dead,) = read_all(topics.bootstrap, topics.dlq)
    assert dead.key == b"bug" and dict(dead.headers)["dlq.error.type"] == b"unprocessable"
    assert "KeyError" in json.loads(dict(dead.headers)["dlq.error.detail"])["message"]


def test_orders_compressed_with_any_codec_kafka_offers_are_stored(ingest_app, topics, run_consumer):
    """A producer may compress with any of Kafka's codecs; one the client could not decode would
    make every poll of that partition fail, for good."""
    orders = list(OrderFactory(seed=79).orders(200))
    codecs = ["gzip", "snappy", "lz4", "zstd"]
    for index, codec in enumerate(codecs):
        chunk = orders[index * 50:(index + 1) * 50]
        produce(topics.bootstrap, topics.orders, [(o["order_uid"].encode(), encode(o)) for o in chunk],
                compression=codec)
    running = run_consumer()
    wait_until(lambda: all_committed(topics), 60, "the consumer committed the whole topic")
    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)
    assert running.consumer.restarts == 0


def test_a_consumer_that_fails_again_at_once_waits_longer_each_time(ingest_app, topics, monkeypatch):
    """A poll that fails every time (as one for a batch the client cannot parse would) restarts the
    consumer, and so rebalances the group, each time: the restarts must back off, not spin."""
    import threading

    from kafka import KafkaConsumer

    from app.ingest.consumer import OrderConsumer

    def failing_poll(self, *args, **kwargs):
        raise RuntimeError("a batch the client cannot parse")

    monkeypatch.setattr(KafkaConsumer, "poll", failing_poll)
    consumer = OrderConsumer(ingest_app)
    thread = threading.Thread(target=consumer.run, name="test-consumer")
    thread.start()
    try:
        wait_until(lambda: consumer.restarts >= 4, 30, "the consumer restarted four times")
        # Four failures in a row, none after a healthy run: the backoff was never started over.
        assert consumer._restart_backoff.attempt >= 4
    finally:
        consumer.stop()
        thread.join(timeout=30)


def test_a_consumer_failing_for_hours_keeps_restarting(ingest_app, topics, monkeypatch):
    """After about a thousand fast failures in a row (hours of a persistent error), the restart
    backoff's exponent passes 1024: the consumer thread must go on restarting, not die."""
    import threading

    from kafka import KafkaConsumer

    from app.ingest.consumer import OrderConsumer

    def failing_poll(self, *args, **kwargs):
        raise RuntimeError("a persistent error")

    monkeypatch.setattr(KafkaConsumer, "poll", failing_poll)
    consumer = OrderConsumer(ingest_app)
    consumer._restart_backoff.attempt = 1023  # as after ~1,000 failures, none after a healthy run
    thread = threading.Thread(target=consumer.run, name="test-consumer")
    thread.start()
    try:
        wait_until(lambda: consumer.restarts >= 3 or not thread.is_alive(), 30,
                   "the consumer restarted three times, or its thread died")
        assert thread.is_alive(), "the consumer thread died"
        assert consumer.status()["state"] == "waiting out an outage"
    finally:
        consumer.stop()
        thread.join(timeout=30)


def test_a_compressed_batch_that_would_fill_the_memory_costs_only_its_records(
        ingest_app, topics, run_consumer):
    """A gzip batch of 80 MiB of zeros is about 80 KB on the wire; decompressed whole, it would be
    80 MiB in the worker (a 2 MiB one, 2 GiB). It is refused at a bound, its record dead-lettered as
    too_large, and the orders after it in the same partition are stored."""
    from app.kafka_clients import new_producer
    from harness.kafka import settings as kafka_settings

    bomb_size = 80 * MIB
    producer = new_producer(kafka_settings(topics.bootstrap), acks="all",
                             compression_type="gzip", max_request_size=bomb_size + MIB,
                             buffer_memory=2 * bomb_size)
    try:
        producer.send(topics.orders, key=b"bomb", value=bytes(bomb_size), partition=0).get(timeout=60)
    finally:
        producer.close()
    orders = list(OrderFactory(seed=80).orders(60))
    produce(topics.bootstrap, topics.orders, [(o["order_uid"].encode(), encode(o)) for o in orders])
    running = run_consumer()
    wait_until(lambda: all_committed(topics), 60, "the consumer committed the whole topic")

    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)
    assert running.consumer.restarts == 0
    (dead,) = read_all(topics.bootstrap, topics.dlq)
    assert dict(dead.headers)["dlq.error.type"] == b"too_large"
    assert dict(dead.headers)["dlq.source.partition"] == b"0"
    # Never held whole: read as a stream, its value skipped, and the detail says so.
    message = json.loads(dict(dead.headers)["dlq.error.detail"])["message"]
    assert message.startswith(f"the record's value ({bomb_size} bytes)") and message.endswith("not read")
    assert dict(dead.headers)["dlq.dropped"] == b"value"


def broken_payloads() -> dict[str, tuple[int, object]]:
    """Payloads the broker accepts (it reads a batch only up to its last record) that each codec
    refuses when the whole payload is decompressed, as the Python client does."""
    import gzip
    import struct

    import lz4.frame
    from kafka.codec import snappy_encode

    from harness.batches import GZIP, LZ4, SNAPPY

    def lz4_bad_checksum(data: bytes) -> bytes:
        frame = lz4.frame.compress(data, content_checksum=True)
        return frame[:-4] + struct.pack("<I", 0)

    return {
        "gzip": (GZIP, lambda data: gzip.compress(data) + b"trailing bytes"),  # zlib's format
        "lz4": (LZ4, lz4_bad_checksum),
        "snappy": (SNAPPY, lambda data: snappy_encode(data, xerial_compatible=True) + b"\x00\x01"),
    }


def test_compressed_payloads_no_codec_can_read_are_dead_lettered_not_restarted(
        ingest_app, topics, run_consumer):
    """Each broken batch's records become `invalid_record` dead letters at their real offsets (the
    zstd case needs a broker whose disk is damaged: tests/test_private_kafka.py); the orders
    behind them in the same partition are stored."""
    from harness.batches import produce_batches, record_batch

    orders = list(OrderFactory(seed=84).orders(30))
    broken = broken_payloads()
    batches = [record_batch([(f"{codec}-{i}".encode(), encode(orders[i])) for i in range(3)], flag, compress)
               for codec, (flag, compress) in broken.items()]
    produce_batches(topics.bootstrap, topics.orders, 1, batches)
    produce_to_partition(topics, [(o["order_uid"].encode(), encode(o), []) for o in orders[3:]], partition=1)
    running = run_consumer()
    wait_until(lambda: all_committed(topics), 60, "the consumer committed the whole topic")

    assert running.consumer.restarts == 0
    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders[3:])
    dead = sorted(read_all(topics.bootstrap, topics.dlq), key=coordinates)
    assert [coordinates(letter) for letter in dead] == [(1, offset) for offset in range(3 * len(broken))]
    for letter, codec in zip(dead, [codec for codec in broken for _ in range(3)], strict=True):
        headers = dict(letter.headers)
        assert headers["dlq.error.type"] == b"invalid_record"
        assert headers["dlq.dropped"] == b"key,value" and letter.value is None
        assert f"{codec}:" in json.loads(headers["dlq.error.detail"])["message"]
