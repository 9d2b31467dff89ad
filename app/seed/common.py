"""What the three generator families share: the contract's limits and field lists, read from the
Cerberus schema (app/validation/schema.py) rather than copied, and small helpers for text, dates
and totals."""

from __future__ import annotations

import random
import re
import string
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any

from app.documents import encode_document
from app.validation.schema import (
    DELIVERY_SCHEMA,
    INT64_MAX,
    ITEM_SCHEMA,
    MAX_ITEMS,
    MAX_RECORD_BYTES,
    ORDER_SCHEMA,
    ORDER_UID_PATTERN,
    PAYMENT_SCHEMA,
)

__all__ = ["INT_MAX", "MAX_ITEMS", "MAX_RECORD_BYTES", "Order", "encode"]

Order = dict[str, Any]
Path = tuple[Any, ...]

INT_MAX = INT64_MAX

#: Compact UTF-8 JSON, the way producers put an order on the topic (and the way it is served).
encode = encode_document

LOWER_ALNUM = string.ascii_lowercase + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
# Every ASCII character the order_uid rule allows (64 of them).
UID_ALPHABET = "".join(
    char for char in string.ascii_letters + string.digits + string.punctuation
    if re.fullmatch(ORDER_UID_PATTERN, char)
)
WINDOW_START = int(datetime(2021, 1, 1, tzinfo=UTC).timestamp())
WINDOW_END = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())

# The sections of an order and their field rules; None is the top level.
SECTIONS: dict[str | None, dict[str, dict[str, Any]]] = {
    None: ORDER_SCHEMA, "delivery": DELIVERY_SCHEMA, "payment": PAYMENT_SCHEMA, "items": ITEM_SCHEMA,
}
SALE_MAX: int = ITEM_SCHEMA["sale"]["int64"]


def max_length(section: str | None, field: str) -> int:
    """The contract's maximum length (in characters) of a text field."""
    return SECTIONS[section][field]["text"][1]


def min_length(section: str | None, field: str) -> int:
    return SECTIONS[section][field]["text"][0]


def field_path(section: str | None, field: str) -> Path:
    """Where a field lives in an order (the first item stands for every item)."""
    if section is None:
        return (field,)
    return (section, 0, field) if section == "items" else (section, field)


def schema_fields() -> list[tuple[str | None, str, dict[str, Any]]]:
    """Every leaf field as (section, field, rules), in the contract's order."""
    fields: list[tuple[str | None, str, dict[str, Any]]] = []
    for name, rules in ORDER_SCHEMA.items():
        if name in SECTIONS:
            fields.extend((name, field, child) for field, child in SECTIONS[name].items())
        else:
            fields.append((None, name, rules))
    return fields


# Length-limited strings without a format of their own, as (section, field, min_len, max_len).
PLAIN_TEXT_FIELDS: tuple[tuple[str | None, str, int, int], ...] = tuple(
    (section, field, *rules["text"]) for section, field, rules in schema_fields()
    if "text" in rules and "regex" not in rules
)
# The ones that hold free text. Left out: payment.transaction and items[].track_number (they mirror
# order_uid and track_number) and shardkey / oof_shard (kept digit strings).
_NOT_FREE_TEXT = {("payment", "transaction"), ("items", "track_number"), (None, "shardkey"),
                  (None, "oof_shard")}
TEXT_FIELDS: tuple[tuple[str | None, str, int, int], ...] = tuple(
    entry for entry in PLAIN_TEXT_FIELDS if entry[:2] not in _NOT_FREE_TEXT
)
INT_PATHS: tuple[Path, ...] = tuple(
    field_path(section, field) for section, field, rules in schema_fields() if "int64" in rules
)
REQUIRED_PATHS: tuple[Path, ...] = tuple(
    (name,) for name in ORDER_SCHEMA
) + tuple(field_path(section, field) for section, field, _ in schema_fields() if section is not None)


def token(rng: random.Random, length: int, alphabet: str = LOWER_ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=length))


def sized(text: str, low: int, high: int) -> str:
    """Repeat or cut *text* until its length (in characters) is within [low, high]."""
    text = text or "x" * low
    while len(text) < low:
        text += text
    return text[:high]


def fill(pattern: str, length: int) -> str:
    return (pattern * (length // len(pattern) + 1))[:length]


def email_of_length(length: int) -> str:
    """A syntactically ordinary address (64-char local part, labels <= 63) of exactly *length*."""
    local = "a" * 64
    rest = length - len(local) - len("@") - len(".com")  # characters left for the domain labels
    labels = []
    while rest > 63:
        labels.append("b" * 62)
        rest -= 63  # the label and its dot
    labels.append("b" * rest)
    return f"{local}@{'.'.join(labels)}.com"


def discounted(price: int, sale: int) -> int:
    return price * (100 - sale) // 100  # the contract's rounding: down


def finalize_totals(order: Order) -> None:
    """Derive total_price, goods_total and amount; clamp at INT_MAX (only edge orders get there)."""
    goods = 0
    for item in order["items"]:
        item["total_price"] = discounted(item["price"], item["sale"])
        goods += item["total_price"]
    payment = order["payment"]
    payment["goods_total"] = min(goods, INT_MAX)
    payment["amount"] = min(goods + payment["delivery_cost"] + payment["custom_fee"], INT_MAX)


def sync_tracks(order: Order) -> None:
    for item in order["items"]:
        item["track_number"] = order["track_number"]


@cache
def _tz(offset: str) -> timezone:
    if offset == "Z":
        return UTC
    hours, minutes = offset[1:].split(":")
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-delta if offset[0] == "-" else delta)


def rfc3339(epoch_s: int, micros: int, offset: str, frac_digits: int) -> str:
    """Render an instant as seen at *offset* ("Z" or "+HH:MM"), with 0-6 fractional digits."""
    local = datetime.fromtimestamp(epoch_s, _tz(offset))
    # isoformat, not strftime: glibc's %Y does not zero-pad years below 1000
    text = local.replace(tzinfo=None).isoformat()
    if frac_digits:
        text += "." + f"{micros:06d}"[:frac_digits]
    return text + offset


def check_item_bounds(min_items: int, max_items: int) -> None:
    if not 1 <= min_items <= max_items <= MAX_ITEMS:
        raise ValueError(f"need 1 <= min_items <= max_items <= {MAX_ITEMS}")
