"""The order contract (docs/contract/README.md) as a Cerberus schema: the single source of the
rules that validation, storage (column sizes) and the OpenAPI document derive from."""

from typing import Any

INT64_MAX = 2**63 - 1
MAX_RECORD_BYTES = 1024 * 1024
ORDER_UID_PATTERN = r"[A-Za-z0-9_-]{1,64}"


# `text` and `int64` are custom rules (app/validation/validator.py) that each check type, bounds and
# storability in one step: Cerberus' cost is per rule, and one rule per field halves validation time.
def text(min_length: int, max_length: int, **rules: Any) -> dict[str, Any]:
    """A required string of min..max characters that PostgreSQL can store."""
    return {"text": (min_length, max_length), **rules}


def int64(maximum: int = INT64_MAX) -> dict[str, Any]:
    """A JSON integer (never a bool, float or string) from 0 to `maximum`."""
    return {"int64": maximum}


# Patterns end in \Z: Cerberus appends "$", which alone would also accept a trailing newline.
DELIVERY_SCHEMA = {
    "name": text(1, 255),
    "phone": text(5, 21, regex=r"\+?[0-9]{5,20}\Z"),
    "zip": text(1, 20),
    "city": text(1, 100),
    "address": text(1, 500),
    "region": text(1, 100),
    "email": text(3, 255, regex=r"[^@\s]+@[^@\s]+\.[^@\s.]+\Z"),
}

PAYMENT_SCHEMA = {
    "transaction": text(1, 255),
    "request_id": text(0, 255),
    "currency": text(3, 3, regex=r"[A-Z]{3}\Z"),
    "provider": text(1, 100),
    "amount": int64(),
    "payment_dt": int64(),
    "bank": text(1, 100),
    "delivery_cost": int64(),
    "goods_total": int64(),
    "custom_fee": int64(),
}

ITEM_SCHEMA = {
    "chrt_id": int64(),
    "track_number": text(1, 255),
    "price": int64(),
    "rid": text(1, 255),
    "name": text(1, 500),
    "sale": int64(maximum=100),
    "size": text(0, 50),
    "total_price": int64(),
    "nm_id": int64(),
    "brand": text(0, 255),
    "status": int64(),
}

MAX_ITEMS = 1000

ORDER_SCHEMA = {
    "order_uid": text(1, 64, regex=ORDER_UID_PATTERN + r"\Z"),
    "track_number": text(1, 255),
    "entry": text(1, 10),
    "delivery": {"type": "dict", "schema": DELIVERY_SCHEMA},
    "payment": {"type": "dict", "schema": PAYMENT_SCHEMA},
    "items": {
        "type": "list",
        "minlength": 1,
        "maxlength": MAX_ITEMS,
        "schema": {"type": "dict", "schema": ITEM_SCHEMA},
    },
    "locale": text(2, 10),
    "internal_signature": text(0, 500),
    "customer_id": text(1, 255),
    "delivery_service": text(1, 255),
    "shardkey": text(1, 10),
    "sm_id": int64(),
    "date_created": {"rfc3339": True},
    "oof_shard": text(1, 10),
}

# The order's sub-documents and their fields, and the fields every order has at its top level (besides
# these and the items): what validation, storage and the served form walk.
NESTED_GROUPS = {"delivery": DELIVERY_SCHEMA, "payment": PAYMENT_SCHEMA}
TOP_LEVEL_FIELDS = [name for name in ORDER_SCHEMA if name not in (*NESTED_GROUPS, "items")]
