"""Topics of their own on the configured Kafka, and records in and out of them, with the service's
own client settings (app/kafka_clients.py: the pinned protocol version, TLS and SASL as configured)
and record size limits."""

import json
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from app.ingest.dead_letters import MAX_DEAD_LETTER_BYTES, MAX_SOURCE_RECORD_BYTES
from app.kafka_clients import KafkaSettings, new_admin, new_consumer, new_producer
from config import Config
from harness import ROOT
from harness.waiting import wait_until

# Room for the largest record the topics accept, whatever a test or the bench produces.
MAX_REQUEST_BYTES = MAX_DEAD_LETTER_BYTES

Record = tuple[bytes | None, bytes | None]


@dataclass(frozen=True)
class Topics:
    """An orders topic, its dead-letter topic and a consumer group, all new."""

    bootstrap: str
    orders: str
    dlq: str
    group: str
    partitions: int


def settings(bootstrap: str) -> KafkaSettings:
    """The configured client settings (security included), on `bootstrap`."""
    return KafkaSettings.from_config(vars(Config)).with_bootstrap(bootstrap)


def admin(bootstrap: str) -> KafkaAdminClient:
    return new_admin(settings(bootstrap))


def _leaders_elected(client: KafkaAdminClient, names: list[str]) -> bool:
    described = client.describe_topics(names)
    return len(described) == len(names) and all(
        topic["error_code"] == 0 and topic["partitions"]
        and all(partition["leader"] >= 0 for partition in topic["partitions"])
        for topic in described
    )


def create_topics(bootstrap: str, partitions: int = 6) -> Topics:
    suffix = uuid.uuid4().hex[:10]
    topics = Topics(bootstrap, f"test-orders-{suffix}", f"test-orders-dlq-{suffix}",
                    f"test-group-{suffix}", partitions)
    client = admin(bootstrap)
    try:
        client.create_topics([
            NewTopic(topics.orders, partitions, 1,
                     topic_configs={"max.message.bytes": str(MAX_SOURCE_RECORD_BYTES)}),
            NewTopic(topics.dlq, 1, 1, topic_configs={"max.message.bytes": str(MAX_DEAD_LETTER_BYTES)}),
        ])
        # A producer that sends before the partitions have a leader gets NotLeaderForPartition.
        wait_until(lambda: _leaders_elected(client, [topics.orders, topics.dlq]), 30,
                   f"the partitions of {topics.orders} and {topics.dlq} have leaders")
    finally:
        client.close()
    return topics


def delete_topics(topics: Topics) -> None:
    client = admin(topics.bootstrap)
    try:
        client.delete_topics([topics.orders, topics.dlq])
    finally:
        client.close()


def produce(bootstrap: str, topic: str, records: list[Record], per_second: float | None = None,
            compression: str | None = None) -> None:
    """Produce and wait for every acknowledgement; with `per_second`, as a paced stream; with
    `compression` ("gzip", "snappy", "lz4", "zstd"), in batches compressed so."""
    producer = new_producer(settings(bootstrap), acks="all", retries=5, max_request_size=MAX_REQUEST_BYTES,
                            compression_type=compression)
    started = time.monotonic()
    try:
        for index, (key, value) in enumerate(records):
            if per_second and index % 100 == 0:
                # Pacing the stream (the scenario), not waiting for anything.
                time.sleep(max(0.0, started + index / per_second - time.monotonic()))
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


_RAW_PRODUCER = """
import json, sys

sys.path.insert(0, sys.argv[1])
from app.kafka_clients import new_producer
from harness.kafka import settings

class RawKey(str):
    # A header key whose bytes are given as they are, UTF-8 or not.
    def __new__(cls, raw):
        key = super().__new__(cls, raw.hex())
        key.raw = raw
        return key

    def encode(self, *args, **kwargs):
        return self.raw

bootstrap, topic, max_request_size = sys.argv[2:5]
producer = new_producer(settings(bootstrap), acks="all", retries=5, max_request_size=int(max_request_size))
for line in sys.stdin:
    key, value, headers = json.loads(line)
    producer.send(topic, key=None if key is None else bytes.fromhex(key),
                  value=None if value is None else bytes.fromhex(value),
                  headers=[(RawKey(bytes.fromhex(k)), bytes.fromhex(v)) for k, v in headers])
producer.flush(timeout=30)
producer.close()
"""


def produce_raw(bootstrap: str, topic: str,
                records: list[tuple[bytes | None, bytes | None, list[tuple[bytes, bytes]]]]) -> None:
    """Produce records that kafka-python's checks refuse but Kafka stores (a null key with a null
    value, header keys that are not UTF-8), as other clients can: the same client with its
    assertions off (`python -O`) and header keys given as raw bytes."""
    lines = "".join(
        json.dumps([None if key is None else key.hex(), None if value is None else value.hex(),
                    [(k.hex(), v.hex()) for k, v in headers]]) + "\n"
        for key, value, headers in records
    )
    subprocess.run([sys.executable, "-O", "-c", _RAW_PRODUCER, str(ROOT), bootstrap, topic,
                    str(MAX_REQUEST_BYTES)],
                   input=lines.encode(), check=True, timeout=60)


class BackgroundStream:
    """`produce` on a thread, so that the caller can act while the stream is still flowing."""

    def __init__(self, bootstrap: str, topic: str, records: list[Record], per_second: float) -> None:
        self.thread = threading.Thread(target=produce, args=(bootstrap, topic, records, per_second))
        self.thread.start()

    def join(self, timeout_s: float = 60) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the stream did not finish producing"


def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = new_consumer(settings(bootstrap))
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return consumer.end_offsets(partitions)
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, timeout_s: float = 30) -> list:
    """Every record of `topic` from the beginning up to its current end."""
    ends = {tp: end for tp, end in end_offsets(bootstrap, topic).items() if end > 0}
    if not ends:
        return []
    consumer = new_consumer(settings(bootstrap), enable_auto_commit=False,
                            max_partition_fetch_bytes=MAX_REQUEST_BYTES)
    records = []
    try:
        consumer.assign(list(ends))
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, f"could not read {topic} to its end in {timeout_s} s"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def stable_members(client: KafkaAdminClient, group: str) -> int:
    """How many members share `group`'s partitions once its rebalance is over (state Stable, each
    member assigned some); 0 while it is still rebalancing, before anyone has joined, or while its
    coordinator is still moving in."""
    try:
        [described] = client.describe_consumer_groups([group])
    except KafkaError as exc:
        if not exc.retriable:
            raise
        return 0
    members = described.members
    assigned = all(member.member_assignment and member.member_assignment.partitions() for member in members)
    return len(members) if described.state == "Stable" and assigned else 0


def committed_offsets(bootstrap: str, group: str, topic: str,
                      client: KafkaAdminClient | None = None) -> dict[TopicPartition, int]:
    """The group's committed offsets on `topic`; pass `client` to reuse one admin connection."""
    own = client is None
    client = client or admin(bootstrap)
    try:
        offsets = client.list_consumer_group_offsets(group)
    finally:
        if own:
            client.close()
    return {tp: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


def all_committed(topics: Topics) -> bool:
    """The group has committed every partition of the orders topic up to its end (False while the
    group's coordinator is still moving in, as on a broker that just started)."""
    ends = end_offsets(topics.bootstrap, topics.orders)
    try:
        committed = committed_offsets(topics.bootstrap, topics.group, topics.orders)
    except KafkaError as exc:
        if not exc.retriable:
            raise
        return False
    return all(committed.get(tp, 0) == end for tp, end in ends.items())
