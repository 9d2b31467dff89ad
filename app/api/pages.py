"""Pages of recent orders as the API and the web page show them: summaries and opaque cursors."""

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.data.store import PageKey, recent_orders
from app.documents import format_utc

# The one definition of an order's summary (GET /orders, the web page's recent orders, and the
# OrderSummary schema of /openapi.json): each key and the order field it shows, plus SUMMARY_COUNT,
# the number of items.
SUMMARY_FIELDS: dict[str, tuple[str, ...]] = {
    "order_uid": ("order_uid",),
    "date_created": ("date_created",),
    "customer_id": ("customer_id",),
    "amount": ("payment", "amount"),
    "currency": ("payment", "currency"),
    "delivery_city": ("delivery", "city"),
}
SUMMARY_COUNT = "item_count"


@dataclass(frozen=True, slots=True)
class RecentPage:
    orders: list[dict[str, Any]]
    next_cursor: str | None


def recent_page(limit: int, before: str | None = None) -> RecentPage:
    """The most recent orders as summaries, `limit` per page; `before` is a cursor this module
    made (ValueError for anything else)."""
    rows = recent_orders(limit, SUMMARY_FIELDS, SUMMARY_COUNT, decode_cursor(before) if before else None)
    summaries = [{**row, "date_created": format_utc(row["date_created"])} for row in rows.rows]
    return RecentPage(summaries, encode_cursor(*rows.next_key) if rows.next_key else None)


def encode_cursor(date_created: datetime, order_id: int) -> str:
    raw = f"{date_created.astimezone(UTC).isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_CURSOR_ID = re.compile(r"[0-9]{1,19}")  # a bigint, in ASCII digits (int() also reads "٥", " 5", "5_0")
_MAX_ORDER_ID = 2**63 - 1


def decode_cursor(cursor: str) -> PageKey:
    """Raises ValueError for anything that encode_cursor did not make. The date comes back in UTC:
    Python parses offsets that PostgreSQL refuses (beyond ±15:59, or with a fraction of a
    second), so none is passed on, and one that overflows on the way to UTC is malformed too."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, order_id = raw.split("|")
        parsed = datetime.fromisoformat(moment)
        if parsed.tzinfo is None:
            raise ValueError("naive date")
        if _CURSOR_ID.fullmatch(order_id) is None or int(order_id) > _MAX_ORDER_ID:
            raise ValueError("order id out of range")
        return parsed.astimezone(UTC), int(order_id)
    except (ValueError, OverflowError, UnicodeDecodeError, binascii.Error) as exc:
        raise ValueError(f"malformed cursor: {exc}") from None
