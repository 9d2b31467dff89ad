"""Publishing rejected records to the dead-letter topic, with the contract's headers."""

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kafka.errors import MessageSizeTooLargeError
from kafka.record.default_records import DefaultRecordBatchBuilder

from app.ingest.kafka_records import MAX_SOURCE_RECORD_BYTES, skipped_parts
from app.ingest.records import Rejection
from app.ingest.spans import MAX_TRACEPARENT_BYTES, TRACEPARENT, traceparent_of
from app.kafka_clients import KafkaSettings, new_producer

log = logging.getLogger(__name__)

# The contract's dead-letter headers (docs/contract/README.md); `flask dlq` reads them back.
HEADER_ERROR_TYPE = "dlq.error.type"
HEADER_ERROR_DETAIL = "dlq.error.detail"
HEADER_SOURCE_TOPIC = "dlq.source.topic"
HEADER_SOURCE_PARTITION = "dlq.source.partition"
HEADER_SOURCE_OFFSET = "dlq.source.offset"
# What the dead letter lacks of its record ("key", "value" or "key,value"): too large to keep, or
# never read (a batch that could not be decompressed).
HEADER_DROPPED = "dlq.dropped"

# What a dead letter may grow to: the largest record the source topic accepts, plus the dlq.*
# headers. `make infra` (devstack/kafka.py) creates the topics with these limits and renders the
# broker's from MAX_SOURCE_RECORD_BYTES.
MAX_DEAD_LETTER_BYTES = MAX_SOURCE_RECORD_BYTES + 1024 * 1024
# A detail can quote the record (an unknown key of 1 MiB): past this it is cut, and says so.
MAX_DETAIL_BYTES = 4096
# What a dead letter adds to its record's key and value: the dlq.* headers (the detail at most
# MAX_DETAIL_BYTES, a topic name at most 249 bytes), a traceparent, and the framing.
_HEADERS_ROOM = MAX_DETAIL_BYTES + MAX_TRACEPARENT_BYTES + 1024


def encode_detail(detail: dict[str, Any]) -> bytes:
    """The dlq.error.detail header: JSON, UTF-8, at most MAX_DETAIL_BYTES, for any detail."""
    try:
        text = json.dumps(detail, ensure_ascii=False)
        encoded = text.encode()
    except UnicodeEncodeError:  # a lone surrogate from the record (JSON allows "\ud800")
        text = json.dumps(detail)
        encoded = text.encode()
    if len(encoded) <= MAX_DETAIL_BYTES:
        return encoded
    # Escaping can double the text's length: half the budget, less the wrapper, always fits.
    start = json.dumps(detail)[: MAX_DETAIL_BYTES // 2 - 100]
    return json.dumps({"truncated": f"the detail was {len(encoded)} bytes; this is its start",
                       "start": start}).encode()


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter as it is published."""

    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def size(self) -> int:
        """Its size as the producer counts it against max_request_size (key, value, headers and
        the framing of a record in its batch)."""
        return DefaultRecordBatchBuilder.estimate_size_in_bytes(self.key, self.value, self.headers)


def dead_letter(record: Any, rejection: Rejection, limit: int = MAX_DEAD_LETTER_BYTES) -> Letter:
    """The dead letter of `record`: its key and value unchanged if they fit in `limit` bytes with
    the headers. Otherwise the value goes if it cannot fit even alone, then the key; the
    dlq.dropped header and the detail say which (a gzip batch under the broker's 2 MiB can hold a
    key of megabytes, and such a dead letter would be refused forever). Parts the consumer never
    read (too large, or in a batch it could not read) are dropped too, and said so."""
    key, value = dead_letter_key(record), record.value
    unread = skipped_parts(record)
    dropped = [part for part in ("key", "value") if part in rejection.dropped or part in unread]
    notes = {f"{part}_dropped": _unread_note(part, unread[part]) for part in dropped
             if part in unread and part not in rejection.dropped}
    room = limit - _HEADERS_ROOM
    if "value" not in dropped and value is not None and len(value) > room:
        dropped.append("value")
        notes["value_dropped"] = _drop_note("value", len(value), limit)
    room -= 0 if "value" in dropped else len(value or b"")
    if "key" not in dropped and len(key) > room:
        dropped.append("key")
        notes["key_dropped"] = _drop_note("key", len(key), limit)
    if notes:
        log.error("the dead letter of %s-%d@%d is sent without the record's %s: %s", record.topic,
                  record.partition, record.offset, " and ".join(dropped), "; ".join(notes.values()))
    # First, so that cutting a long detail never cuts these notes.
    detail = {**notes, **rejection.detail}
    return Letter(key=b"" if "key" in dropped else key, value=None if "value" in dropped else value,
                  headers=_headers(record, rejection.error_type, detail, dropped))


def _drop_note(part: str, size: int, limit: int) -> str:
    return f"the record's {part} ({size} bytes) does not fit in a dead letter of {limit} bytes"


def _unread_note(part: str, size: int) -> str:
    return (f"the record's {part} ({size} bytes), decompressed, larger than any record the topic accepts: "
            "not read")


def _headers(record: Any, error_type: str, detail: dict[str, Any],
             dropped: list[str]) -> list[tuple[str, bytes]]:
    headers = [
        (HEADER_ERROR_TYPE, error_type.encode()),
        (HEADER_ERROR_DETAIL, encode_detail(detail)),
        (HEADER_SOURCE_TOPIC, record.topic.encode()),
        (HEADER_SOURCE_PARTITION, str(record.partition).encode()),
        (HEADER_SOURCE_OFFSET, str(record.offset).encode()),
    ]
    if dropped:
        headers.append((HEADER_DROPPED, ",".join(sorted(set(dropped))).encode()))
    # The record's trace goes with it, so that a replay or a look into the dead letter finds it.
    traceparent = traceparent_of(record)
    if traceparent is not None:
        headers.append((TRACEPARENT, traceparent))
    return headers


def dead_letter_key(record: Any) -> bytes:
    # kafka-python cannot send a record with neither key nor value; the contract says such a
    # record's dead letter has an empty key.
    return b"" if record.key is None else record.key


class DeadLetterPublisher:
    """Sends dead letters and waits for the broker's acknowledgement of every one of them."""

    def __init__(self, settings: KafkaSettings, topic: str, timeout_s: float = 15.0) -> None:
        self.topic = topic
        self._timeout_s = timeout_s
        self._producer = new_producer(
            settings,
            acks="all",
            retries=5,
            # Keeps the order of retried sends, so a dead letter never overtakes an earlier one.
            max_in_flight_requests_per_connection=1,
            max_request_size=MAX_DEAD_LETTER_BYTES,
            request_timeout_ms=int(timeout_s * 1000),
            client_id="order-service-dlq",
        )

    def publish(self, rejected: Sequence[tuple[Any, Rejection]]) -> None:
        """Send every (record, rejection); raise if any was not acknowledged (nothing is lost:
        the caller does not commit, and the batch is retried)."""
        futures = [self._send(dead_letter(record, rejection)) for record, rejection in rejected]
        self._producer.flush(timeout=self._timeout_s)
        for future, (record, rejection) in zip(futures, rejected, strict=True):
            try:
                future.get(timeout=self._timeout_s)
            except MessageSizeTooLargeError:
                # The topic takes less than MAX_DEAD_LETTER_BYTES (its max.message.bytes was set
                # lower): the headers alone go, saying so, rather than a retry that fails forever.
                # If even they are refused, the topic's setting is the outage.
                self._send(dead_letter(record, rejection, limit=0)).get(timeout=self._timeout_s)

    def _send(self, letter: Letter):
        return self._producer.send(self.topic, key=letter.key, value=letter.value, headers=letter.headers)

    def close(self) -> None:
        self._producer.close(timeout=5)
