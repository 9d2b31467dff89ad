"""The served form of an order: one canonical shape and one encoding, so that an order written
into a cache by the consumer and one read back from PostgreSQL are the same bytes (and ETag)."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.validation import ORDER_SCHEMA, parse_rfc3339
from app.validation.schema import ITEM_SCHEMA


def format_utc(moment: datetime) -> str:
    """The contract's served form of a date: YYYY-MM-DDTHH:MM:SS[.ffffff]Z in UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def served_form(order: dict[str, Any]) -> dict[str, Any]:
    """A valid incoming order as `get_order` returns it: the contract's field order whatever
    order the producer wrote, and date_created in UTC. Every value is otherwise unchanged."""
    return in_contract_order(order, parse_rfc3339(order["date_created"]))


def in_contract_order(order: Any, date_created: datetime) -> dict[str, Any]:
    """`order` (nested mappings: an incoming order, or one assembled from table rows) in the
    contract's field order, with `date_created` (an instant) in its served UTC form."""
    document: dict[str, Any] = {}
    for name, rules in ORDER_SCHEMA.items():
        value = order[name]
        if name == "date_created":
            value = format_utc(date_created)
        elif name == "items":
            value = [{field: item[field] for field in ITEM_SCHEMA} for item in value]
        elif rules.get("type") == "dict":
            value = {field: value[field] for field in rules["schema"]}
        document[name] = value
    return document


def encode_document(document: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the bytes that are served, cached and hashed."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class ServedOrder:
    """A valid incoming order with its served bytes, built once: storage hashes the bytes, the
    cache keeps them."""

    order: dict[str, Any]
    date_created: datetime
    body: bytes

    @classmethod
    def of(cls, order: dict[str, Any]) -> "ServedOrder":
        moment = parse_rfc3339(order["date_created"])
        return cls(order, moment, encode_document(in_contract_order(order, moment)))

    @property
    def order_uid(self) -> str:
        return self.order["order_uid"]
