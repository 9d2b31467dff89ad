"""The consumer loop: poll a batch, store the valid orders in one transaction, dead-letter the rest,
and only then commit the batch's offsets. An outage of PostgreSQL or of the dead-letter topic makes
it wait (keeping its group membership) and retry from the first uncommitted record; nothing is
skipped and nothing is dead-lettered for it."""

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from kafka.structs import OffsetAndMetadata
from opentelemetry import trace

from app.documents import ServedOrder
from app.ingest.dead_letters import DeadLetterPublisher
from app.ingest.kafka_records import install_record_reading
from app.ingest.records import Rejection, check_headers, decode_order
from app.ingest.sink import BatchResult, OrderSink, Outage, unprocessable
from app.ingest.spans import record_links, start_batch_span, tracer
from app.kafka_clients import KafkaSettings, new_consumer
from app.kafka_health import KafkaVerdict, kafka_health
from app.metrics import (
    BATCH_DURATION,
    BATCH_SIZE,
    CONSUMER_LAG,
    CONSUMER_PARTITIONS,
    CONSUMER_RESTARTS,
    CONSUMER_WAITING,
    ORDERS_CONSUMED,
)
from config import CONSUMER_SESSION_TIMEOUT_MS

log = logging.getLogger(__name__)

Record = Any  # kafka.consumer.fetcher.ConsumerRecord
Batch = dict[TopicPartition, list[Record]]


# A consumer run that lasted this long before failing was healthy: its next restart starts the
# backoff over.
HEALTHY_RUN_S = 60


class _Stopping(Exception):
    """Raised inside kafka-python's wait for the group coordinator once the consumer is asked to
    stop: that wait has no bound of its own, and lasts as long as Kafka is away."""


class Backoff:
    """Capped exponential backoff with full jitter, so that workers don't retry in lockstep."""

    def __init__(self, first_s: float = 0.2, cap_s: float = 10.0) -> None:
        self.first_s, self.cap_s, self.attempt = first_s, cap_s, 0

    def next_delay(self) -> float:
        # 2 ** 1024 does not fit a float, and an outage of hours gets there; the cap is reached
        # long before 2 ** 64 anyway.
        ceiling = min(self.cap_s, self.first_s * 2 ** min(self.attempt, 64))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def _decode(record: Record) -> ServedOrder | Rejection:
    """The record's order (with its served bytes, built once for storage and the cache) or its
    Rejection; an error of ours on one record costs only that record."""
    try:
        decoded = check_headers(record.headers) or decode_order(record.value)
        return decoded if isinstance(decoded, Rejection) else ServedOrder.of(decoded)
    except Exception as exc:
        log.exception("failed on %s-%d@%d; it is dead-lettered as unprocessable",
                      record.topic, record.partition, record.offset)
        return unprocessable(exc)


class _RevocationLog(ConsumerRebalanceListener):
    def __init__(self, consumer: "OrderConsumer") -> None:
        self._owner = consumer

    def on_partitions_revoked(self, revoked):
        self._owner._set_owned(frozenset(), joined=False)
        # Batches are processed between polls, and this runs inside poll(): no batch is in flight,
        # everything handled so far is committed, and the rest will go to the new owner.
        for tp in revoked:
            CONSUMER_LAG.labels(str(tp.partition)).set(0)
        log.info("partitions revoked: %s", sorted(f"{tp.topic}-{tp.partition}" for tp in revoked))

    def on_partitions_assigned(self, assigned):
        self._owner._set_owned(frozenset(assigned), joined=True)
        log.info("partitions assigned: %s", sorted(f"{tp.topic}-{tp.partition}" for tp in assigned))


class OrderConsumer:
    """Owns one KafkaConsumer on one thread. Stop it with `stop()` from any thread."""

    def __init__(self, app: Flask, on_stored: Callable[[list[ServedOrder]], None] | None = None) -> None:
        self.app = app
        self.config = app.config
        self.kafka = KafkaSettings.from_config(app.config)
        self.health = kafka_health(app)
        self.on_stored = on_stored
        self.stop_event = threading.Event()
        self.joined = threading.Event()
        self._consumer: KafkaConsumer | None = None
        self._publisher: DeadLetterPublisher | None = None
        self._sink = OrderSink()
        self._backoff = Backoff(cap_s=self.config["CONSUMER_MAX_BACKOFF_S"])
        self._restart_backoff = Backoff(cap_s=self.config["CONSUMER_MAX_BACKOFF_S"])
        # Public for /readyz and the tests: when the current outage began, why, and retries since.
        self.waiting_since: float | None = None
        self.outage: Outage | None = None
        self.retries = 0
        # Restarts after an unexpected error: each one costs the whole group a rebalance.
        self.restarts = 0
        self._owned: frozenset = frozenset()
        # When the client last failed to find the group coordinator (Kafka away), for /readyz.
        self.kafka_lost_since: float | None = None
        self._closing = False

    def assigned_partitions(self) -> frozenset:
        return self._owned

    def _set_owned(self, partitions: frozenset, joined: bool) -> None:
        """Called from the rebalance listener and on close: what this consumer owns now (a member
        of the group may own nothing when it has more members than partitions)."""
        CONSUMER_PARTITIONS.inc(len(partitions) - len(self._owned))
        self._owned = partitions
        if joined:
            self.joined.set()
        else:
            self.joined.clear()

    def stop(self) -> None:
        self.stop_event.set()

    def status(self) -> dict[str, Any]:
        """A snapshot for /readyz, safe to read from any thread."""
        owned = sorted(tp.partition for tp in self._owned)
        waiting_since = self.waiting_since  # read once: the consumer thread may clear it meanwhile
        if self.stop_event.is_set():
            state = "stopping"
        elif self.kafka_lost_since is not None:
            state = "waiting for Kafka"
        elif waiting_since is not None:
            state = "waiting out an outage"
        elif self.joined.is_set():
            state = "in group"
        else:
            state = "joining its group"
        status = {"state": state, "partitions": owned, "restarts": self.restarts}
        outage = self.outage
        if waiting_since is not None:
            status["waiting_s"] = round(time.monotonic() - waiting_since, 1)
            status["retries"] = self.retries
            if outage is not None:
                status["reason"] = outage.reason
                if outage.constraint:
                    status["constraint"] = outage.constraint
        return status

    def run(self) -> None:
        """Consume until stopped. An unexpected error closes the client and starts again from the
        committed offsets after a backoff: the worker never goes on serving with its consumer
        silently gone. While Kafka is away the client itself keeps reconnecting inside poll()."""
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                if self._kafka_refuses():
                    continue
                self._connect()
                self._consume()
            except _Stopping:
                return
            except (TopicAuthorizationFailedError, GroupAuthorizationFailedError) as exc:
                # An ACL taken away while it ran: waited out like a refusal at the start.
                self._wait_refused(self.health.report("authorization", f"Kafka's ACLs refuse this service: "
                                                      f"{exc.__class__.__name__} {exc.args}"))
            except Exception as exc:
                log.exception("the consumer failed; it restarts from the committed offsets")
                self.restarts += 1
                CONSUMER_RESTARTS.inc()
                self._start_outage(Outage(f"unexpected {exc.__class__.__name__}", "an unexpected error"))
                # Each restart rebalances the whole group: one that fails again at once (a record
                # the client cannot parse) must wait longer each time, until a run lasts.
                if time.monotonic() - started > HEALTHY_RUN_S:
                    self._restart_backoff.reset()
                self.stop_event.wait(self._restart_backoff.next_delay())
            finally:
                self._close()

    def _kafka_refuses(self) -> bool:
        """Kafka refuses this service (TLS, SASL, an ACL, a setting): wait with backoff and ask
        again, instead of handing kafka-python a connection that it would retry every second, for
        good, with a misleading error each time. Unreachable is not a refusal: the client itself
        waits for the broker, as always."""
        verdict = self.health.check()
        if not verdict.refused:
            return False
        self._wait_refused(verdict)
        return True

    def _wait_refused(self, verdict: KafkaVerdict) -> None:
        # The KafkaHealth logged it, once; /readyz shows its reason.
        self._start_outage(Outage(verdict.reason, verdict.reason), logged=True)
        self.stop_event.wait(self._backoff.next_delay())

    def _connect(self) -> None:
        # With api_version pinned, neither client contacts the broker here: nothing to wait for.
        self._closing = False
        self._consumer = self._new_consumer()
        self._publisher = DeadLetterPublisher(self.kafka, self.config["KAFKA_DLQ_TOPIC"])
        self._end_outage()

    def _new_consumer(self) -> KafkaConsumer:
        install_record_reading()
        consumer = new_consumer(
            self.kafka,
            group_id=self.config["KAFKA_GROUP_ID"],
            enable_auto_commit=False,
            # A new group starts from the beginning: orders already in the topic are not skipped.
            auto_offset_reset="earliest",
            max_poll_records=self.config["CONSUMER_BATCH_SIZE"],
            # A member learns that the group is rebalancing from a heartbeat's answer: kafka-python's
            # 3 s left a starting worker without partitions for 3 s while the first one took them all
            # (bench/README.md, "heartbeat").
            heartbeat_interval_ms=self.config["CONSUMER_HEARTBEAT_INTERVAL_MS"],
            session_timeout_ms=CONSUMER_SESSION_TIMEOUT_MS,
            client_id=f"order-service-{threading.get_native_id()}",
        )
        consumer.subscribe([self.config["KAFKA_TOPIC"]], listener=_RevocationLog(self))
        self._watch_coordinator_lookups(consumer._coordinator, threading.current_thread())
        return consumer

    def _watch_coordinator_lookups(self, coordinator: Any, owner: threading.Thread) -> None:
        """While Kafka is away, kafka-python's poll(), commit() and offset look-ups wait for the
        group coordinator (and for metadata) with no bound, looking it up again and again. Each
        look-up tells /readyz whether Kafka answers; and once it does not, a stop() ends those
        waits on this consumer's thread: the network poll under them raises _Stopping. (While
        Kafka answers, a stop lets the batch finish and its offsets be committed.)"""
        lookup, network_poll = coordinator.lookup_coordinator, coordinator._client._poll

        def watched_lookup():
            future = lookup()
            future.add_callback(self._kafka_found)
            future.add_errback(self._kafka_lost)
            return future

        def interruptible_network_poll(timeout: float):
            if (self.stop_event.is_set() and self.kafka_lost_since is not None and not self._closing
                    and threading.current_thread() is owner):
                raise _Stopping
            return network_poll(timeout)

        coordinator.lookup_coordinator = watched_lookup
        coordinator._client._poll = interruptible_network_poll

    def _kafka_found(self, _response: Any) -> None:
        if self.kafka_lost_since is not None:
            log.warning("Kafka answers again after %.1f s", time.monotonic() - self.kafka_lost_since)
            self.kafka_lost_since = None

    def _kafka_lost(self, exc: Exception) -> None:
        if self.kafka_lost_since is None:
            self.kafka_lost_since = time.monotonic()
            log.error("Kafka's group coordinator cannot be reached (%s): the consumer waits for it",
                      exc.__class__.__name__)

    def _consume(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self.stop_event.is_set():
            self._poll_once(consumer)

    def _poll_once(self, consumer: KafkaConsumer) -> None:
        """Poll a batch and handle it. Its records are let go before the next poll, which reads
        the next fetch within a bound that counts only what the client still holds
        (app/ingest/kafka_records.py)."""
        poll_started = time.time_ns()
        batch = consumer.poll(
            timeout_ms=self.config["CONSUMER_BATCH_WAIT_MS"],
            max_records=self.config["CONSUMER_BATCH_SIZE"],
        )
        if not batch:
            return
        try:
            self.process(batch, poll=(poll_started, time.time_ns()))
        except Outage as exc:
            # Its traceback holds the batch: a copy without it is kept.
            outage = Outage(str(exc), exc.reason, exc.constraint)
        else:
            self._end_outage()
            return
        first_offsets = {tp: records[0].offset for tp, records in batch.items()}
        del batch
        self._start_outage(outage)
        self._wait_out(first_offsets)

    def process(self, batch: Batch, poll: tuple[int, int] | None = None) -> BatchResult:
        """Handle one polled batch end to end; raise Outage (having committed nothing) to retry.
        `poll` is when its poll started and ended (time.time_ns()), for the batch's span."""
        started = time.perf_counter()
        records = [record for partition_records in batch.values() for record in partition_records]
        batch_span = start_batch_span(self.config["KAFKA_TOPIC"], poll[0] if poll else None)
        with trace.use_span(batch_span, end_on_exit=True):
            if batch_span.is_recording():
                self._describe_batch(batch_span, records, poll)
            result = self._handle(batch, records, started)
            if batch_span.is_recording():
                batch_span.set_attributes({"order_service.stored": len(result.stored),
                                           "order_service.duplicates": len(result.duplicates),
                                           "order_service.dead_lettered": len(result.dead_letters)})
        log.debug("batch: %d records, %d stored, %d duplicates, %d dead-lettered",
                  len(records), len(result.stored), len(result.duplicates), len(result.dead_letters))
        return result

    @staticmethod
    def _describe_batch(span: Any, records: list[Record], poll: tuple[int, int] | None) -> None:
        span.set_attribute("messaging.batch.message_count", len(records))
        for link in record_links(records):
            span.add_link(link.context, link.attributes)
        if poll:
            tracer.start_span("poll", start_time=poll[0]).end(end_time=poll[1])

    def _handle(self, batch: Batch, records: list[Record], started: float) -> BatchResult:
        valid: list[tuple[Record, ServedOrder]] = []
        rejected: list[tuple[Record, Rejection]] = []
        with tracer.start_as_current_span("decode and validate"):
            for record in records:
                decoded = _decode(record)
                if isinstance(decoded, Rejection):
                    rejected.append((record, decoded))
                else:
                    valid.append((record, decoded))
        with tracer.start_as_current_span("store"), self.app.app_context():
            result = self._sink.store(valid)
        result.dead_letters = rejected + result.dead_letters
        if result.dead_letters:
            with tracer.start_as_current_span("dead-letter"):
                try:
                    self._publisher.publish(result.dead_letters)
                except KafkaError as exc:
                    raise Outage(f"dead-letter topic {self.config['KAFKA_DLQ_TOPIC']}: {exc!r}",
                                 "the dead-letter topic is unavailable") from exc
        with tracer.start_as_current_span("commit"):
            self._commit(batch)
        self._observe(batch, result, time.perf_counter() - started)
        if self.on_stored:
            # Duplicates too: a retried batch finds its own orders stored by the failed attempt.
            with tracer.start_as_current_span("cache"):
                self.on_stored(result.stored + result.duplicates)
        return result

    def _observe(self, batch: Batch, result: BatchResult, seconds: float) -> None:
        BATCH_DURATION.observe(seconds)
        BATCH_SIZE.observe(sum(len(records) for records in batch.values()))
        ORDERS_CONSUMED.labels("stored").inc(len(result.stored))
        ORDERS_CONSUMED.labels("duplicate").inc(len(result.duplicates))
        ORDERS_CONSUMED.labels("dead_lettered").inc(len(result.dead_letters))
        for tp, records in batch.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                CONSUMER_LAG.labels(str(tp.partition)).set(max(0, highwater - records[-1].offset - 1))

    def _commit(self, batch: Batch) -> None:
        offsets = {tp: OffsetAndMetadata(records[-1].offset + 1, "") for tp, records in batch.items()}
        try:
            self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced while we worked: the new owner redelivers these records, and
            # storing them again is a no-op (duplicates), so nothing is lost or doubled.
            log.warning("offsets not committed after a rebalance; the new owner will redeliver: %s", exc)

    def _wait_out(self, first_offsets: dict[TopicPartition, int]) -> None:
        """Rewind to the batch's first records and wait, polling paused partitions so that the
        group keeps us, then resume: the next poll redelivers the same records.

        A rebalance can run inside any of these polls, and it hands out partitions unpaused at
        their committed offsets. So each poll first pauses whatever is assigned now, and whatever
        a poll returns all the same is rewound too, never dropped."""
        consumer = self._consumer
        self._rewind(first_offsets)
        deadline = time.monotonic() + self._backoff.next_delay()
        while not self.stop_event.is_set() and (remaining := deadline - time.monotonic()) > 0:
            consumer.pause(*consumer.assignment())
            returned = consumer.poll(timeout_ms=max(1, int(remaining * 1000)))
            self._rewind({tp: records[0].offset for tp, records in returned.items()})
        consumer.resume(*consumer.assignment())

    def _rewind(self, first_offsets: dict[TopicPartition, int]) -> None:
        assigned = self._consumer.assignment()
        for tp, offset in first_offsets.items():
            if tp in assigned:
                self._consumer.seek(tp, offset)

    def _start_outage(self, outage: Outage, logged: bool = False) -> None:
        self.retries += 1
        self.outage = outage
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()
            CONSUMER_WAITING.inc()
            if not logged:
                log.error("consumer waiting: %s; retrying with backoff until it is back", outage)

    def _end_outage(self) -> None:
        self._backoff.reset()
        self.retries = 0
        if self.waiting_since is not None:
            log.warning("consumer resumed after %.1f s of outage", time.monotonic() - self.waiting_since)
            self.waiting_since = None
            self.outage = None
            CONSUMER_WAITING.dec()

    def _close(self) -> None:
        # Everything handled is committed already; close without auto-commit, leaving the group
        # at once so that its partitions move to the other members without waiting for a timeout.
        self._set_owned(frozenset(), joined=False)
        self._closing = True
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception:
                log.exception("closing the Kafka consumer failed")
            self._consumer = None
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
