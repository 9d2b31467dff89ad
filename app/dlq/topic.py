"""Reading a topic from its beginning (or given offsets) up to the end offsets it had when the
read started, without a consumer group, so that reading never moves anyone's position."""

import logging
import time
from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CorruptRecordException, KafkaError, TopicAuthorizationFailedError

from app.ingest.dead_letters import MAX_DEAD_LETTER_BYTES
from app.ingest.kafka_records import install_record_reading
from app.kafka_clients import KafkaSettings, new_admin, unreachable_message
from app.kafka_clients import new_consumer as new_kafka_consumer
from app.kafka_health import refusal

# How long a whole read may take before the tool gives up (a topic of a few hundred thousand
# dead letters reads in well under that on these machines).
READ_TIMEOUT_S = 120.0
# Dead letters are as large as the largest record the source topic accepts (2 MiB with the
# topics `make infra` creates) plus headers; a fetch must hold at least one of them.
MAX_FETCH_BYTES = MAX_DEAD_LETTER_BYTES
_REQUEST_TIMEOUT_MS = 10_000


class _NoGroupNotice(logging.Filter):
    """Reading without a group is the point here, not something to warn about on every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "group_id is None" not in record.getMessage()


logging.getLogger("kafka.coordinator.consumer").addFilter(_NoGroupNotice())


class DlqError(Exception):
    """A failure the user can act on; the message says what to do. Exit code 1."""


def unreachable(settings: KafkaSettings, exc: BaseException) -> DlqError:
    return DlqError(refusal(settings) or unreachable_message(settings, exc))


def topic_partitions(settings: KafkaSettings, topics: dict[str, str]) -> dict[str, list[int]]:
    """Each topic's partitions, asked of the admin API (which fails fast when the broker is down
    and, unlike a consumer or producer, never auto-creates a topic it asks about). `topics` maps
    a topic to the setting it comes from, for the error message."""
    try:
        client = new_admin(settings, request_timeout_ms=_REQUEST_TIMEOUT_MS, client_id="order-service-dlq")
    except KafkaError as exc:
        raise unreachable(settings, exc) from None
    try:
        described = client.describe_topics(list(topics))
    except KafkaError as exc:
        raise unreachable(settings, exc) from None
    finally:
        client.close()
    partitions: dict[str, list[int]] = {}
    for entry in described:
        if entry["error_code"] == TopicAuthorizationFailedError.errno:
            topic = entry["topic"]
            raise DlqError(refusal(settings, (topic,)) or f"Kafka's ACLs refuse topic {topic}")
        if entry["error_code"] != 0 or not entry["partitions"]:
            setting = topics.get(entry["topic"], "the topic")
            raise DlqError(
                f"topic {entry['topic']} does not exist on {settings.bootstrap_servers} (error code "
                f"{entry['error_code']}); check {setting} (`make infra` creates the service's topics)."
            )
        partitions[entry["topic"]] = sorted(p["partition"] for p in entry["partitions"])
    return partitions


def new_consumer(settings: KafkaSettings, group_id: str | None = None) -> KafkaConsumer:
    """A consumer for assign(): never auto-commits; `group_id` only to read and commit offsets."""
    # Header names that are not UTF-8 reach the tool (shown escaped) instead of failing the fetch.
    install_record_reading()
    return new_kafka_consumer(
        settings,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_FETCH_BYTES,
        fetch_max_bytes=MAX_FETCH_BYTES * 4,
        request_timeout_ms=_REQUEST_TIMEOUT_MS + 5_000,
        client_id="order-service-dlq",
    )


def read_records(settings: KafkaSettings, consumer: KafkaConsumer, topic: str, partitions: list[int],
                 start: dict[int, int] | None = None, stop: dict[int, int] | None = None,
                 timeout_s: float = READ_TIMEOUT_S) -> Iterator[Any]:
    """Yield the records of `topic` from `start` (default: the beginning) up to `stop` (default:
    the end offsets at the time of the call), per partition in offset order."""
    tps = [TopicPartition(topic, partition) for partition in partitions]
    consumer.assign(tps)
    # A consumer that read before has these partitions paused (see below).
    consumer.resume(*tps)
    try:
        ends = consumer.end_offsets(tps)
    except KafkaError as exc:
        raise unreachable(settings, exc) from None
    for tp in tps:
        if stop and tp.partition in stop:
            ends[tp] = min(ends[tp], stop[tp.partition])
        if start and tp.partition in start:
            consumer.seek(tp, start[tp.partition])
        else:
            consumer.seek_to_beginning(tp)
    pending = set(tps)
    deadline = time.monotonic() + timeout_s
    while True:
        done = {tp for tp in pending if consumer.position(tp) >= ends[tp]}
        if done:
            # Stop fetching past the captured end: the read is bounded even if records keep coming.
            consumer.pause(*done)
            pending -= done
        if not pending:
            return
        if time.monotonic() > deadline:
            behind = ", ".join(f"partition {tp.partition} at {consumer.position(tp)} of {ends[tp]}"
                               for tp in sorted(pending))
            raise DlqError(f"could not read {topic} to its end within {timeout_s:.0f} s ({behind}); "
                           "is the broker overloaded? Run again.")
        try:
            batch = consumer.poll(timeout_ms=500)
        except TopicAuthorizationFailedError:
            raise DlqError(f"Kafka's ACLs do not let {settings.sasl_username or 'this client'} read {topic}: "
                           "flask dlq needs READ on KAFKA_DLQ_TOPIC (and WRITE on KAFKA_TOPIC to replay); "
                           "`make infra` writes such a user's settings to client-sasl-operator.env") from None
        except CorruptRecordException as exc:
            # The broker checked the record's CRC, so this is a record the client cannot parse.
            where = ", ".join(f"partition {tp.partition} at offset {consumer.position(tp)}"
                              for tp in sorted(pending))
            raise DlqError(f"kafka-python cannot read a record of {topic} near {where} ({exc})") from None
        yield from _drain(batch, ends)


def _drain(batch: dict[TopicPartition, list[Any]], ends: dict[TopicPartition, int]) -> Iterator[Any]:
    """The poll's records before the captured ends, each let go once yielded: the next poll reads
    its fetch within a bound that counts only what the client still holds."""
    while batch:
        tp, records = batch.popitem()
        records.reverse()
        while records:
            record = records.pop()
            if record.offset < ends[tp]:
                yield record
