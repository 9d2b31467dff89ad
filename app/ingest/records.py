"""Turning one Kafka record into an order, or into the reason it goes to the dead-letter topic."""

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.ingest.kafka_records import SkippedParts, UndecodableHeaderKey, UnreadBatch
from app.validation import MAX_RECORD_BYTES, validate_order


class ErrorType(StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_ORDER = "invalid_order"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    # The record breaks Kafka-level expectations: a header key that is not UTF-8, or a batch that
    # cannot be decompressed or read.
    INVALID_RECORD = "invalid_record"
    # The service failed on this record (a bug): replay it once the service is fixed.
    UNPROCESSABLE = "unprocessable"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record is dead-lettered: `detail` becomes the dlq.error.detail header (as JSON)."""

    error_type: str
    detail: dict[str, Any]
    # Parts of the record its dead letter cannot carry whatever their size ("key", "value"): those
    # of a batch that was never decompressed.
    dropped: tuple[str, ...] = ()


def check_headers(headers: list[tuple[str, bytes | None]]) -> Rejection | None:
    """A record the client could not read (app/ingest/kafka_records.py), whose value was too
    large to read, or whose header keys are not UTF-8, is refused whatever its value."""
    for name, _ in headers:
        if isinstance(name, UnreadBatch):
            return Rejection(ErrorType.INVALID_RECORD, {"message": name.detail}, dropped=("key", "value"))
        if isinstance(name, SkippedParts) and "value" in name.sizes:
            dropped = tuple(part for part in ("key", "value") if part in name.sizes)
            return Rejection(ErrorType.TOO_LARGE, {"message": name.describe()}, dropped=dropped)
        if isinstance(name, UndecodableHeaderKey):
            return Rejection(ErrorType.INVALID_RECORD,
                             {"message": f"a header key is not UTF-8: {name.raw[:64]!r}"})
    return None


def decode_order(value: bytes | None) -> dict[str, Any] | Rejection:
    """Decode and validate a record's value: the order, or the Rejection to dead-letter."""
    if value is None:
        return Rejection(ErrorType.INVALID_JSON, {"message": "the record has no value (a tombstone)"})
    if len(value) > MAX_RECORD_BYTES:
        return Rejection(
            ErrorType.TOO_LARGE,
            {"message": f"the value is {len(value)} bytes; the limit is {MAX_RECORD_BYTES}"},
        )
    try:
        document = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Rejection(ErrorType.INVALID_JSON, {"message": f"not UTF-8: {exc}"})
    except RecursionError:
        return Rejection(ErrorType.INVALID_JSON, {"message": "JSON nested too deeply to decode"})
    except ValueError as exc:  # JSONDecodeError, and integers with too many digits
        return Rejection(ErrorType.INVALID_JSON, {"message": f"not valid JSON: {exc}"})
    errors = validate_order(document)
    if errors:
        return Rejection(ErrorType.INVALID_ORDER, {"errors": errors})
    return document
