"""Publishing rejected records to the dead-letter topic, with the contract's headers."""

import json
import logging
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer

from app.ingest.records import Rejection

log = logging.getLogger(__name__)

# Kafka 4 refuses the old requests the client falls back to when its version probe fails.
KAFKA_API_VERSION = (2, 6, 0)

# The contract's dead-letter headers (docs/contract/README.md); `flask dlq` reads them back.
HEADER_ERROR_TYPE = "dlq.error.type"
HEADER_ERROR_DETAIL = "dlq.error.detail"
HEADER_SOURCE_TOPIC = "dlq.source.topic"
HEADER_SOURCE_PARTITION = "dlq.source.partition"
HEADER_SOURCE_OFFSET = "dlq.source.offset"


def dead_letter_headers(record: Any, rejection: Rejection) -> list[tuple[str, bytes]]:
    return [
        (HEADER_ERROR_TYPE, rejection.error_type.encode()),
        (HEADER_ERROR_DETAIL, json.dumps(rejection.detail, ensure_ascii=False).encode()),
        (HEADER_SOURCE_TOPIC, record.topic.encode()),
        (HEADER_SOURCE_PARTITION, str(record.partition).encode()),
        (HEADER_SOURCE_OFFSET, str(record.offset).encode()),
    ]


class DeadLetterPublisher:
    """Sends dead letters and waits for the broker's acknowledgement of every one of them."""

    def __init__(self, bootstrap_servers: str, topic: str, timeout_s: float = 15.0) -> None:
        self.topic = topic
        self._timeout_s = timeout_s
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            api_version=KAFKA_API_VERSION,
            acks="all",
            retries=5,
            # Keeps the order of retried sends, so a dead letter never overtakes an earlier one.
            max_in_flight_requests_per_connection=1,
            max_request_size=2 * 1024 * 1024,
            request_timeout_ms=int(timeout_s * 1000),
            client_id="order-service-dlq",
        )

    def publish(self, rejected: Sequence[tuple[Any, Rejection]]) -> None:
        """Send every (record, rejection); raise if any was not acknowledged (nothing is lost:
        the caller does not commit, and the batch is retried)."""
        futures = [
            self._producer.send(
                self.topic,
                key=record.key,
                value=record.value,
                headers=dead_letter_headers(record, rejection),
            )
            for record, rejection in rejected
        ]
        self._producer.flush(timeout=self._timeout_s)
        for future in futures:
            future.get(timeout=self._timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=5)
