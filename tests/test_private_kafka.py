"""Faults the shared broker must never see, against a Kafka broker of this module's own
(harness/private_kafka.py): log segments damaged on its disk, offsets with gaps as compaction
leaves them, and the broker killed under a running service."""

import json
import signal
import struct
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
from tests.conftest import RunningConsumer, ingest_settings
from tests.helpers import consumer_states, stored_uids

pytestmark = pytest.mark.slow

MIB = 1024 * 1024


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
    return create_app(TestConfig, ingest_settings(database_url, private_topics))


def consume_everything(app, topics) -> RunningConsumer:
    """A consumer run until the group committed the whole topic, then stopped."""
    running = RunningConsumer(app)
    try:
        wait_until(lambda: all_committed(topics), 60, "the consumer committed the whole topic")
    finally:
        running.stop()
    return running


def keyed(orders: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(o["order_uid"].encode(), encode(o)) for o in orders]


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
        private_kafka.stop(graceful=True)
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
    consume_everything(private_app, private_topics)
    assert sorted(stored_uids(private_app)) == sorted(o["order_uid"] for o in orders)
    assert read_all(private_topics.bootstrap, private_topics.dlq) == []


def batch_spans(segment: bytes) -> list[tuple[int, int]]:
    """(position, length) of each record batch in a log segment (Kafka's on-disk form is the
    batches one after another: base offset, then the length of the rest)."""
    spans, position = [], 0
    while position + 12 <= len(segment):
        (length,) = struct.unpack_from(">i", segment, position + 8)
        spans.append((position, 12 + length))
        position += 12 + length
    return spans


def overwrite(path, position: int, data: bytes) -> None:
    """Bytes changed in place, as a failing disk or a careless hand would: the broker serves its
    segments as they are on disk (it checks a batch's CRC when it takes it, not when it serves it)."""
    with open(path, "r+b") as segment:
        segment.seek(position)
        segment.write(data)


def test_batches_damaged_on_the_brokers_disk_are_dead_lettered_for_every_codec(
        private_kafka, private_topics, private_app):
    """The broker refuses a batch its codec cannot read, so a consumer meets one only after the
    disk damaged it (kafka-python does not check CRCs): zstd's case, which no producer can send."""
    import gzip

    import lz4.frame
    import zstandard
    from kafka.codec import snappy_encode

    from harness.batches import GZIP, LZ4, SNAPPY, ZSTD, produce_batches, record_batch

    orders = list(OrderFactory(seed=86).orders(40))
    codecs = {  # flag, compress, where in the payload a flipped byte breaks it
        "gzip": (GZIP, gzip.compress, 20),
        "lz4": (LZ4, lambda data: lz4.frame.compress(data, content_checksum=True), 30),
        "snappy": (SNAPPY, lambda data: snappy_encode(data, xerial_compatible=True), 20),
        "zstd": (ZSTD, zstandard.ZstdCompressor(write_checksum=True).compress, 30),
    }
    batches = [record_batch([(f"{name}-{i}".encode(), encode(orders[index * 3 + i])) for i in range(3)], flag,
                            compress) for index, (name, (flag, compress, _)) in enumerate(codecs.items())]
    produce_batches(private_topics.bootstrap, private_topics.orders, 0, batches)
    produce(private_topics.bootstrap, private_topics.orders, keyed(orders[12:]))
    segment = private_kafka.segment(private_topics.orders, 0)
    stored = segment.read_bytes()
    for (position, _), (_, _, at) in zip(batch_spans(stored), codecs.values(), strict=False):
        payload_at = position + 61 + at
        overwrite(segment, payload_at, bytes([stored[payload_at] ^ 0xFF]))

    running = consume_everything(private_app, private_topics)
    assert running.consumer.restarts == 0
    assert sorted(stored_uids(private_app)) == sorted(o["order_uid"] for o in orders[12:])
    dead = read_all(private_topics.bootstrap, private_topics.dlq)
    by_offset = {int(dict(letter.headers)["dlq.source.offset"]): dict(letter.headers) for letter in dead}
    assert sorted(by_offset) == list(range(12))
    for offset, headers in by_offset.items():
        assert headers["dlq.source.partition"] == b"0"
        assert headers["dlq.error.type"] == b"invalid_record", offset
        assert headers["dlq.dropped"] == b"key,value"
        assert list(codecs)[offset // 3] in json.loads(headers["dlq.error.detail"])["message"]


def test_a_compacted_batch_with_offset_gaps_gets_each_records_own_offset(
        private_kafka, private_topics, private_app):
    """Compaction leaves batches whose offsets have gaps (the header keeps the batch's last offset).
    A record the consumer cannot keep (here: values of 70 and 3 MiB, only possible compressed) is
    dead-lettered under its real offset, and the valid order between them is stored."""
    import gzip

    from harness.batches import GZIP, produce_batches, record_batch, records_section

    order, later = list(OrderFactory(seed=87).orders(1)), list(OrderFactory(seed=88).orders(20))
    kept = {0: (b"big-0", bytes(70 * MIB)), 2: (b"order", encode(order[0])), 5: (b"big-5", bytes(3 * MIB))}
    every = [kept.get(delta, (f"gone-{delta}".encode(), b"compacted away")) for delta in range(6)]
    size = len(gzip.compress(records_section(every))) + 1024

    def padded(data: bytes) -> bytes:  # gzip ignores zeros after its stream, as the broker does
        compressed = gzip.compress(data)
        return compressed + bytes(size - len(compressed))

    produce_batches(private_topics.bootstrap, private_topics.orders, 0, [record_batch(every, GZIP, padded)])
    produce(private_topics.bootstrap, private_topics.orders, keyed(later))
    # What the log cleaner would leave: the same batch without records 1, 3 and 4.
    segment = private_kafka.segment(private_topics.orders, 0)
    stored = segment.read_bytes()
    compacted = bytearray(record_batch(list(kept.values()), GZIP, padded, offset_deltas=list(kept)))
    compacted[12:16] = stored[12:16]  # the partition leader epoch the broker wrote
    assert len(compacted) == batch_spans(stored)[0][1]
    overwrite(segment, 0, bytes(compacted))

    running = consume_everything(private_app, private_topics)
    assert running.consumer.restarts == 0
    assert sorted(stored_uids(private_app)) == sorted(o["order_uid"] for o in order + later)
    dead = {int(dict(letter.headers)["dlq.source.offset"]): letter
            for letter in read_all(private_topics.bootstrap, private_topics.dlq)}
    assert sorted(dead) == [0, 5]
    assert [dead[offset].key for offset in (0, 5)] == [b"big-0", b"big-5"]
    assert {dict(letter.headers)["dlq.error.type"] for letter in dead.values()} == {b"too_large"}
