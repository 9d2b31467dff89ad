"""Helpers the tests use to drive and inspect the real Kafka and PostgreSQL."""

import base64
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.errors
from flask import Flask
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.data.models import orders_table
from app.extensions import db
from app.ingest.dead_letters import KAFKA_API_VERSION, MAX_DEAD_LETTER_BYTES, MAX_SOURCE_RECORD_BYTES

# The order contract and its canonical example live in the repository.
CONTRACT_DIR = Path(__file__).resolve().parents[1] / "docs" / "contract"


def cursor_of(raw: str) -> str:
    """A `before` cursor in the form encode_cursor writes (URL-safe base64 without padding),
    holding whatever text a test (or an attacker) chose."""
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def contract_example() -> dict:
    """A fresh copy of the contract's canonical example order."""
    return json.loads((CONTRACT_DIR / "order.example.json").read_text())


@dataclass(frozen=True)
class TestTopics:
    bootstrap: str
    orders: str
    dlq: str
    group: str
    partitions: int


def admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, api_version=KAFKA_API_VERSION)


def create_topics(bootstrap: str, partitions: int = 6) -> TestTopics:
    suffix = uuid.uuid4().hex[:10]
    topics = TestTopics(bootstrap, f"test-orders-{suffix}", f"test-orders-dlq-{suffix}",
                        f"test-group-{suffix}", partitions)
    client = admin(bootstrap)
    try:
        client.create_topics([
            NewTopic(topics.orders, partitions, 1,
                     topic_configs={"max.message.bytes": str(MAX_SOURCE_RECORD_BYTES)}),
            NewTopic(topics.dlq, 1, 1, topic_configs={"max.message.bytes": str(MAX_DEAD_LETTER_BYTES)}),
        ])
    finally:
        client.close()
    return topics


def delete_topics(topics: TestTopics) -> None:
    client = admin(topics.bootstrap)
    try:
        client.delete_topics([topics.orders, topics.dlq])
    finally:
        client.close()


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]],
            per_second: float | None = None) -> None:
    """Produce and wait for every acknowledgement; with `per_second`, as a paced stream."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, api_version=KAFKA_API_VERSION, acks="all",
                             max_request_size=3 * 1024 * 1024)
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
from kafka import KafkaProducer

class RawKey(str):
    # A header key whose bytes are given as they are, UTF-8 or not.
    def __new__(cls, raw):
        key = super().__new__(cls, raw.hex())
        key.raw = raw
        return key

    def encode(self, *args, **kwargs):
        return self.raw

bootstrap, topic = sys.argv[1:3]
producer = KafkaProducer(bootstrap_servers=bootstrap, api_version=(2, 6, 0), acks="all",
                         max_request_size=3 * 1024 * 1024)
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
    subprocess.run([sys.executable, "-O", "-c", _RAW_PRODUCER, bootstrap, topic], input=lines.encode(),
                   check=True, timeout=60)


class BackgroundStream:
    """`produce` on a thread, so that a test can act while the stream is still flowing."""

    def __init__(self, bootstrap: str, topic: str, records: list, per_second: float) -> None:
        import threading

        self.thread = threading.Thread(target=produce, args=(bootstrap, topic, records, per_second))
        self.thread.start()

    def join(self, timeout_s: float = 60) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the stream did not finish producing"


def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, api_version=KAFKA_API_VERSION)
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
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, api_version=KAFKA_API_VERSION,
                             enable_auto_commit=False, max_partition_fetch_bytes=3 * 1024 * 1024)
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


def wait_until(condition, timeout_s: float, message: str, interval_s: float = 0.1):
    """Poll `condition` until it returns something truthy; fail with `message` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s: {message}")
        time.sleep(interval_s)


def all_committed(topics) -> bool:
    ends = end_offsets(topics.bootstrap, topics.orders)
    committed = committed_offsets(topics.bootstrap, topics.group, topics.orders)
    return all(committed.get(tp, 0) == end for tp, end in ends.items())


def stored_uids(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(orders_table.c.order_uid)))




def admin_dsn(url: str, database: str = "postgres") -> str:
    parsed = make_url(url)
    return (
        f"host={parsed.host} port={parsed.port or 5432} user={parsed.username} "
        f"password={parsed.password or ''} dbname={database} connect_timeout=5"
    )


def _admin_execute(url: str, statement: str) -> None:
    connection = psycopg2.connect(admin_dsn(url))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def create_database(server_url: str, prefix: str) -> str:
    """A new, empty database on the server of `server_url`; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin_execute(server_url, f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str, timeout_s: float = 30) -> None:
    """Drop the database, waiting out an autovacuum worker in it: WITH (FORCE) may not end a
    superuser's process, so the drop is retried until the worker is done."""
    statement = f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _admin_execute(url, statement)
            return
        except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ObjectInUse):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
