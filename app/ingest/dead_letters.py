"""Publishing rejected records to the dead-letter topic, with the contract's headers."""

import json
import logging
from collections.abc import Sequence
from typing import Any

from kafka.errors import MessageSizeTooLargeError

from app.ingest.records import Rejection
from app.ingest.spans import TRACEPARENT, traceparent_of
from app.kafka_clients import KafkaSettings, new_producer

log = logging.getLogger(__name__)

# The contract's dead-letter headers (docs/contract/README.md); `flask dlq` reads them back.
HEADER_ERROR_TYPE = "dlq.error.type"
HEADER_ERROR_DETAIL = "dlq.error.detail"
HEADER_SOURCE_TOPIC = "dlq.source.topic"
HEADER_SOURCE_PARTITION = "dlq.source.partition"
HEADER_SOURCE_OFFSET = "dlq.source.offset"

# The largest record the source topic accepts (the broker's and the topic's max.message.bytes), and
# what its dead letter may grow to: the record plus the dlq.* headers. `make infra` (devstack/kafka.py)
# creates the topics with these limits and renders the broker's from the first.
MAX_SOURCE_RECORD_BYTES = 2 * 1024 * 1024
MAX_DEAD_LETTER_BYTES = 3 * 1024 * 1024
# A detail can quote the record (an unknown key of 1 MiB): past this it is cut, and says so.
MAX_DETAIL_BYTES = 4096


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


def dead_letter_headers(record: Any, rejection: Rejection) -> list[tuple[str, bytes]]:
    headers = [
        (HEADER_ERROR_TYPE, rejection.error_type.encode()),
        (HEADER_ERROR_DETAIL, encode_detail(rejection.detail)),
        (HEADER_SOURCE_TOPIC, record.topic.encode()),
        (HEADER_SOURCE_PARTITION, str(record.partition).encode()),
        (HEADER_SOURCE_OFFSET, str(record.offset).encode()),
    ]
    # The record's trace goes with it, so that a replay or a look into the dead letter finds it.
    traceparent = traceparent_of(record)
    if traceparent is not None:
        headers.append((TRACEPARENT, traceparent))
    return headers


def dead_letter_key(record: Any) -> bytes | None:
    # kafka-python cannot send a record with neither key nor value; the contract says such a
    # record's dead letter has an empty key.
    return b"" if record.key is None and record.value is None else record.key


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
        futures = [self._send(record, rejection) for record, rejection in rejected]
        self._producer.flush(timeout=self._timeout_s)
        for future, (record, rejection) in zip(futures, rejected, strict=True):
            try:
                future.get(timeout=self._timeout_s)
            except MessageSizeTooLargeError:
                # Only when the source topic was configured past MAX_SOURCE_RECORD_BYTES: a retry
                # would fail forever, so this dead letter goes without its value, and says so.
                self._send(record, rejection, keep_value=False).get(timeout=self._timeout_s)

    def _send(self, record: Any, rejection: Rejection, keep_value: bool = True):
        if not keep_value:
            size = len(record.value or b"") + len(record.key or b"")
            log.error("dead letter of %s-%d@%d is too large for %s (%d bytes): sent without its value",
                      record.topic, record.partition, record.offset, self.topic, size)
            # First, so that cutting a long detail never cuts this note.
            rejection = Rejection(rejection.error_type, {
                "value_dropped": f"the record ({size} bytes) is larger than the dead-letter topic takes",
                **rejection.detail,
            })
        return self._producer.send(
            self.topic,
            key=dead_letter_key(record) if keep_value else (record.key or b""),
            value=record.value if keep_value else None,
            headers=dead_letter_headers(record, rejection),
        )

    def close(self) -> None:
        self._producer.close(timeout=5)
