"""`replay`: dead letters' original key and value produced back to the source topic, once per
source record, remembered in a consumer group of the tool's own.

What the group remembers, per dead-letter partition: a committed offset (every dead letter before
it is dealt with) and, in the commit's metadata, the ranges of offsets after it that are dealt with
too (a `--type`/`--key`/`--limit` run leaves others behind). A dead letter is "dealt with" once its
replay was acknowledged by the broker, or when it can never be replayed (a copy of a source record
already replayed, no value or a key the dead letter did not keep, no source coordinates). A dead
letter with the same key and value as one already dealt with came back: a replayed record that
failed again, and replaying it again without a new fix would only loop. It is left for a run with
`--again`, which replays it.
"""

import contextlib
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, MessageSizeTooLargeError
from kafka.structs import OffsetAndMetadata

from app.dlq.records import DeadLetter, Source
from app.dlq.summary import matches
from app.dlq.topic import MAX_FETCH_BYTES, DlqError, read_records, unreachable
from app.kafka_clients import COMMAND_KAFKA_WAIT_S, KafkaSettings, new_producer

REPLAYED_FROM_HEADER = "dlq.replayed.from"
REPLAY_GROUP_SUFFIX = "-dlq-replay"
# Brokers refuse commit metadata longer than offset.metadata.max.bytes (4096 by default).
METADATA_BUDGET = 3000
_METADATA_PREFIX = "replayed "
_RANGE = re.compile(r"([0-9]{1,19})(?:-([0-9]{1,19}))?")
ACK_TIMEOUT_S = 30.0

Position = tuple[int, int]  # (dead-letter partition, offset)


class Reason:
    """Why a dead letter is not replayed by this run."""

    DUPLICATE = "copies of a source record replayed or selected already"
    CAME_BACK = "came back after an earlier replay (same key and value; --again replays them)"
    NO_VALUE = ("without a value (a null record's, or one too large to keep: dlq.dropped); replayed, it "
                "would be a tombstone")
    NO_KEY = "without the record's key (too large to keep: dlq.dropped); replayed, it would not be the record"
    NO_SOURCE = "without source coordinates (not written by this service's consumer)"
    FILTER = "left out by --type/--key, for a later run"
    LIMIT = "left for a later run by --limit"


@dataclass
class Ledger:
    """What the replay group remembers of one dead-letter partition."""

    position: int = 0
    ranges: list[tuple[int, int]] = field(default_factory=list)  # inclusive, after `position`

    def dealt_with(self, offset: int) -> bool:
        return offset < self.position or any(low <= offset <= high for low, high in self.ranges)

    @classmethod
    def from_commit(cls, committed: OffsetAndMetadata | None) -> "Ledger":
        if committed is None:
            return cls()
        ranges = []
        metadata = committed.metadata or ""
        if metadata.startswith(_METADATA_PREFIX):
            for part in metadata[len(_METADATA_PREFIX):].split(","):
                found = _RANGE.fullmatch(part)
                if found:
                    low = int(found.group(1))
                    ranges.append((low, int(found.group(2) or low)))
        return cls(committed.offset, ranges)

    def metadata(self) -> str:
        parts = (str(low) if low == high else f"{low}-{high}" for low, high in self.ranges)
        return _METADATA_PREFIX + ",".join(parts)


@dataclass(frozen=True, slots=True)
class Entry:
    """What the plan needs of one dead letter (its value is not kept)."""

    position: Position
    source: Source | None
    digest: bytes
    error_type_label: str
    matches: bool
    has_value: bool
    has_key: bool


@dataclass
class Plan:
    to_replay: dict[Position, Entry] = field(default_factory=dict)  # first copies, in order
    copies: dict[Position, Position] = field(default_factory=dict)  # later copy -> first copy
    settled: set[Position] = field(default_factory=set)  # dealt with by this run without a send
    skipped: Counter = field(default_factory=Counter)  # Reason -> dead letters
    offsets: dict[int, list[int]] = field(default_factory=dict)  # every dead letter read, per partition


def make_plan(letters: Iterable[DeadLetter], ledgers: dict[int, Ledger], error_type: str | None,
              key: bytes | None, limit: int | None, again: bool) -> Plan:
    plan = Plan()
    entries: list[Entry] = []
    done_sources: set[Source] = set()
    done_contents: set[bytes] = set()
    for letter in letters:
        position = (letter.dlq_partition, letter.dlq_offset)
        plan.offsets.setdefault(letter.dlq_partition, []).append(letter.dlq_offset)
        if ledgers[letter.dlq_partition].dealt_with(letter.dlq_offset):
            if letter.source is not None:
                done_sources.add(letter.source)
            done_contents.add(letter.content_digest())
            continue
        entries.append(Entry(position, letter.source, letter.content_digest(), letter.error_type_label,
                             matches(letter, error_type, key), letter.value is not None,
                             b"key" not in (letter.dropped or b"").split(b",")))
    first_copy: dict[Source, Position] = {}
    for entry in sorted(entries, key=lambda e: e.position):
        if entry.source in done_sources:
            _settle(plan, entry, Reason.DUPLICATE)
        elif entry.source in first_copy:
            plan.copies[entry.position] = first_copy[entry.source]
            plan.skipped[Reason.DUPLICATE] += 1
        elif not entry.matches:
            plan.skipped[Reason.FILTER] += 1
        elif entry.source is None:
            _settle(plan, entry, Reason.NO_SOURCE)
        elif not entry.has_value:
            _settle(plan, entry, Reason.NO_VALUE)
        elif not entry.has_key:
            _settle(plan, entry, Reason.NO_KEY)
        elif entry.digest in done_contents and not again:
            # Not dealt with: a later run with --again replays it.
            plan.skipped[Reason.CAME_BACK] += 1
        elif limit is not None and len(plan.to_replay) >= limit:
            plan.skipped[Reason.LIMIT] += 1
        else:
            first_copy[entry.source] = entry.position
            plan.to_replay[entry.position] = entry
    for offsets in plan.offsets.values():
        offsets.sort()
    return plan


def _settle(plan: Plan, entry: Entry, reason: str) -> None:
    plan.settled.add(entry.position)
    plan.skipped[reason] += 1


def read_ledgers(settings: KafkaSettings, consumer: KafkaConsumer, topic: str,
                 partitions: list[int]) -> dict[int, Ledger]:
    ledgers = {}
    try:
        for partition in partitions:
            committed = consumer.committed(TopicPartition(topic, partition), metadata=True)
            ledgers[partition] = Ledger.from_commit(committed)
    except KafkaError as exc:
        raise unreachable(settings, exc) from None
    return ledgers


@dataclass
class Outcome:
    acknowledged: Counter = field(default_factory=Counter)  # error type -> replayed records
    failures: list[str] = field(default_factory=list)
    forgotten: int = 0  # dealt with but past the metadata budget: a later run may replay them


def replay(settings: KafkaSettings, consumer: KafkaConsumer, dlq_topic: str, target_topic: str, plan: Plan,
           ledgers: dict[int, Ledger], on_ack: Callable[[], None]) -> Outcome:
    """Produce the plan's records to `target_topic`, wait for the broker's acknowledgements, then
    commit what is dealt with. A record not acknowledged is not remembered: the next run retries."""
    outcome = Outcome()
    acked: set[Position] = set()
    if plan.to_replay:
        acked = _produce(settings, consumer, dlq_topic, target_topic, plan, on_ack, outcome)
    dealt_with = plan.settled | acked | {copy for copy, first in plan.copies.items() if first in acked}
    offsets = {}
    for partition, ledger in ledgers.items():
        updated, forgotten = advance_ledger(ledger, plan.offsets.get(partition, []), partition, dealt_with)
        outcome.forgotten += forgotten
        if updated != ledger:
            offsets[TopicPartition(dlq_topic, partition)] = OffsetAndMetadata(updated.position,
                                                                              updated.metadata())
    if offsets:
        try:
            consumer.commit(offsets)
        except KafkaError as exc:
            raise DlqError(f"replayed {sum(outcome.acknowledged.values())} records but could not "
                           f"remember it ({exc!r}): a next run would replay them again.") from None
    return outcome


def _produce(settings: KafkaSettings, consumer: KafkaConsumer, dlq_topic: str, target_topic: str,
             plan: Plan, on_ack: Callable[[], None], outcome: Outcome) -> set[Position]:
    try:
        producer = new_producer(
            settings, acks="all", retries=5,
            # Replays of one key keep their order.
            max_in_flight_requests_per_connection=1,
            max_request_size=MAX_FETCH_BYTES, linger_ms=20, max_block_ms=COMMAND_KAFKA_WAIT_S * 1000,
            client_id="order-service-dlq-replay",
        )
    except KafkaError as exc:
        raise unreachable(settings, exc) from None
    send = _Sender(settings, consumer, producer, dlq_topic, target_topic, plan, on_ack, outcome)
    try:
        futures = send(set(plan.to_replay), one_by_one=False)
        too_large = {position for position, future in futures.items()
                     if isinstance(future.exception, MessageSizeTooLargeError)}
        if too_large:
            # The broker refuses a whole batch for one record over the topic's max.message.bytes:
            # those are sent again one by one, so that only the records too large fail.
            futures.update(send(too_large, one_by_one=True))
    finally:
        producer.close(timeout=5)
    acked = set()
    for position, future in sorted(futures.items()):
        entry = plan.to_replay[position]
        if future.succeeded():
            acked.add(position)
            outcome.acknowledged[entry.error_type_label] += 1
        else:
            outcome.failures.append(f"{entry.source}: {future.exception or 'no acknowledgement'!r}")
    return acked


@dataclass
class _Sender:
    settings: KafkaSettings
    consumer: KafkaConsumer
    producer: KafkaProducer
    dlq_topic: str
    target_topic: str
    plan: Plan
    on_ack: Callable[[], None]
    outcome: Outcome

    def __call__(self, positions: set[Position], one_by_one: bool) -> dict[Position, Any]:
        """Send the dead letters at `positions` and wait for the broker's answers: {position: future}."""
        start: dict[int, int] = {}
        stop: dict[int, int] = {}
        for partition, offset in positions:
            start[partition] = min(start.get(partition, offset), offset)
            stop[partition] = max(stop.get(partition, offset), offset + 1)
        futures: dict[Position, Any] = {}
        attempted: set[Position] = set()
        try:
            records = read_records(self.settings, self.consumer, self.dlq_topic, sorted(start), start, stop)
            for record in records:
                position = (record.partition, record.offset)
                if position not in positions:
                    continue
                attempted.add(position)
                future = self._send(record, self.plan.to_replay[position])
                if future is not None:
                    futures[position] = future
                    if one_by_one:
                        self._flush()
        except (DlqError, KeyboardInterrupt) as exc:
            # What was sent so far is still waited for and remembered; the rest is for a next run.
            self.outcome.failures.append(f"stopped before the end: {exc or 'interrupted'}")
            attempted = positions
        self._flush()
        if positions - attempted:
            self.outcome.failures.append(
                f"{len(positions - attempted)} dead letters were gone from {self.dlq_topic} (retention?)")
        return futures

    def _send(self, record: Any, entry: Entry) -> Any:
        try:
            future = self.producer.send(self.target_topic, key=record.key, value=record.value,
                                        headers=[(REPLAYED_FROM_HEADER, str(entry.source).encode())])
        except (KafkaError, AssertionError) as exc:
            self.outcome.failures.append(f"{entry.source}: {exc!r}")
            return None
        future.add_callback(lambda _metadata: self.on_ack())
        return future

    def _flush(self) -> None:
        # A flush that times out is not an error here: futures not done count as not acknowledged.
        with contextlib.suppress(KafkaError):
            self.producer.flush(timeout=ACK_TIMEOUT_S)


def advance_ledger(ledger: Ledger, offsets: list[int], partition: int,
                   dealt_with: set[Position]) -> tuple[Ledger, int]:
    """The ledger after this run, and how many dealt-with dead letters did not fit its metadata."""
    position: int | None = None
    ranges: list[tuple[int, int]] = []
    extending = False
    for offset in offsets:
        done = ledger.dealt_with(offset) or (partition, offset) in dealt_with
        if position is None:
            if not done:
                position = offset
            continue
        if done and extending:
            ranges[-1] = (ranges[-1][0], offset)
        elif done:
            ranges.append((offset, offset))
        extending = done
    if position is None:
        # Everything read is dealt with: the position moves to the end of what was read.
        position = max(ledger.position, offsets[-1] + 1) if offsets else ledger.position
    updated = Ledger(position, ranges)
    forgotten = 0
    while len(updated.metadata()) > METADATA_BUDGET:
        low, high = updated.ranges.pop()
        forgotten += sum(1 for offset in offsets if low <= offset <= high)
    return updated, forgotten
