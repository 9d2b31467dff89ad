"""The one place that stores and reads orders. Route, consumer and CLI all go through here."""

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import psycopg2
from psycopg2.extras import execute_values
from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.exc import DBAPIError

from app.documents import encode_document, format_utc, in_contract_order
from app.extensions import db
from app.orders.models import NESTED_GROUPS, TOP_LEVEL_FIELDS, items_table, orders_table
from app.validation import parse_rfc3339
from app.validation.schema import ITEM_SCHEMA

ITEM_FIELDS = list(ITEM_SCHEMA)


class SaveOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class _Prepared:
    uid: str
    row: tuple[Any, ...]
    items: list[dict[str, Any]]
    digest: bytes


# Every column but the generated ones, in the table's order, which models.py derives from the schema:
# top-level fields, then delivery_* and payment_*, then content_hash.
_ORDER_COLUMNS = [column.name for column in orders_table.columns if column.name not in ("id", "ingested_at")]
_INSERT_ORDERS = (
    f"INSERT INTO {orders_table.name} ({', '.join(_ORDER_COLUMNS)}) VALUES %s "
    "ON CONFLICT (order_uid) DO NOTHING RETURNING id, order_uid"
)


def _prepare(order: dict[str, Any]) -> _Prepared:
    """The order's row for `orders`, as a tuple in _ORDER_COLUMNS' order. Its content_hash is the
    SHA-256 of the served bytes: equal for a redelivery (even in another key order or date offset),
    different for any other content."""
    moment = parse_rfc3339(order["date_created"])
    digest = hashlib.sha256(encode_document(in_contract_order(order, moment))).digest()
    top = [moment if name == "date_created" else order[name] for name in TOP_LEVEL_FIELDS]
    nested = [order[group][name] for group, schema in NESTED_GROUPS.items() for name in schema]
    return _Prepared(order["order_uid"], (*top, *nested, digest), order["items"], digest)


def save_orders(orders: Sequence[dict[str, Any]]) -> list[SaveOutcome]:
    """Store a batch of validated orders in one transaction; one outcome per input, in order.

    Orders are immutable: an order_uid already stored (or earlier in the same batch) is a
    DUPLICATE when its content is the same and a CONFLICT otherwise; neither writes anything.
    Safe against a concurrent writer of the same order: ON CONFLICT waits for the other
    transaction and then reports the row as existing. Raises SQLAlchemy errors after a rollback.
    """
    prepared = [_prepare(order) for order in orders]
    first_by_uid: dict[str, _Prepared] = {}
    for entry in prepared:
        first_by_uid.setdefault(entry.uid, entry)
    try:
        stored_ids = _insert_new(sorted(first_by_uid.values(), key=lambda entry: entry.uid))
        _insert_items(first_by_uid, stored_ids)
        existing = _stored_hashes([uid for uid in first_by_uid if uid not in stored_ids])
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return _outcomes(prepared, first_by_uid, stored_ids, existing)


def _insert_new(candidates: list[_Prepared]) -> dict[str, int]:
    # Sorted by uid so that two overlapping batches lock rows in the same order (no deadlock).
    if not candidates:
        return {}
    rows = _execute_values(_INSERT_ORDERS, [entry.row for entry in candidates], fetch=True)
    return {uid: order_id for order_id, uid in rows}


def _execute_values(statement: str, rows: list[tuple], fetch: bool = False) -> list[tuple]:
    """psycopg2's execute_values on the session's own connection (so in its transaction), with
    psycopg2's errors raised as SQLAlchemy's (IntegrityError, OperationalError...) like any query.

    The batch inserts bypass SQLAlchemy's per-row parameter handling, which cost more than
    PostgreSQL's own work on the rows (the measurement is in bench/README.md).
    """
    cursor = db.session.connection().connection.cursor()
    try:
        # 1,000 rows a statement bounds its size (an order may carry 1,000 items of long text).
        return execute_values(cursor, statement, rows, page_size=1000, fetch=fetch)
    except psycopg2.Error as exc:
        raise DBAPIError.instance(statement, None, exc, psycopg2.Error) from exc


_ITEM_COLUMNS = [column.name for column in items_table.columns]  # order_id, position, the item fields
_INSERT_ITEMS = f"INSERT INTO {items_table.name} ({', '.join(_ITEM_COLUMNS)}) VALUES %s"


def _insert_items(first_by_uid: dict[str, _Prepared], stored_ids: dict[str, int]) -> None:
    rows = [
        (order_id, position, *(item[field] for field in ITEM_FIELDS))
        for uid, order_id in stored_ids.items()
        for position, item in enumerate(first_by_uid[uid].items)
    ]
    if rows:
        _execute_values(_INSERT_ITEMS, rows)


def _stored_hashes(uids: list[str]) -> dict[str, bytes]:
    if not uids:
        return {}
    statement = select(orders_table.c.order_uid, orders_table.c.content_hash).where(
        orders_table.c.order_uid.in_(uids)
    )
    return {uid: bytes(digest) for uid, digest in db.session.execute(statement)}


def _outcomes(
    prepared: list[_Prepared],
    first_by_uid: dict[str, _Prepared],
    stored_ids: dict[str, int],
    existing: dict[str, bytes],
) -> list[SaveOutcome]:
    outcomes = []
    for entry in prepared:
        if entry is first_by_uid[entry.uid] and entry.uid in stored_ids:
            outcomes.append(SaveOutcome.STORED)
            continue
        reference = existing.get(entry.uid) or first_by_uid[entry.uid].digest
        same = reference == entry.digest
        outcomes.append(SaveOutcome.DUPLICATE if same else SaveOutcome.CONFLICT)
    return outcomes


def get_order(order_uid: str) -> dict[str, Any] | None:
    """The stored order as it came in (date_created in the served UTC form), or None."""
    documents = _documents(select(orders_table).where(orders_table.c.order_uid == order_uid))
    return documents[0] if documents else None


def latest_orders(limit: int) -> list[dict[str, Any]]:
    """Full documents of the `limit` most recent orders, newest first (to warm the cache)."""
    return _documents(
        select(orders_table)
        .order_by(orders_table.c.date_created.desc(), orders_table.c.id.desc())
        .limit(limit)
    )


def _documents(order_query: Select) -> list[dict[str, Any]]:
    """Run a query on `orders` and assemble the documents with their items (two queries)."""
    rows = db.session.execute(order_query).mappings().all()
    if not rows:
        return []
    items_by_order: dict[int, list[Any]] = {row["id"]: [] for row in rows}
    items = db.session.execute(
        select(items_table)
        .where(items_table.c.order_id.in_(list(items_by_order)))
        .order_by(items_table.c.order_id, items_table.c.position)
    ).mappings()
    for item in items:
        items_by_order[item["order_id"]].append(item)
    return [_to_document(row, items_by_order[row["id"]]) for row in rows]


def _to_document(row: Any, items: list[Any]) -> dict[str, Any]:
    nested = {group: {field: row[f"{group}_{field}"] for field in schema}
              for group, schema in NESTED_GROUPS.items()}
    return in_contract_order({**row, **nested, "items": items}, row["date_created"])


@dataclass(frozen=True, slots=True)
class RecentPage:
    orders: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(date_created: datetime, order_id: int) -> str:
    raw = f"{date_created.astimezone(UTC).isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_CURSOR_ID = re.compile(r"[0-9]{1,19}")  # a bigint, in ASCII digits (int() also reads "٥", " 5", "5_0")
_MAX_ORDER_ID = 2**63 - 1


def decode_cursor(cursor: str) -> tuple[datetime, int]:
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


def recent_orders(limit: int, before: str | None = None) -> RecentPage:
    """The most recent orders (by date_created, newest first) as summaries, `limit` per page."""
    item_count = (
        select(func.count())
        .where(items_table.c.order_id == orders_table.c.id)
        .scalar_subquery()
        .label(SUMMARY_COUNT)
    )
    # Nested fields are columns named <group>_<field> (models.py).
    fields = [orders_table.c["_".join(path)].label(key) for key, path in SUMMARY_FIELDS.items()]
    statement = (
        select(orders_table.c.id, *fields, item_count)
        .order_by(orders_table.c.date_created.desc(), orders_table.c.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        moment, order_id = decode_cursor(before)
        statement = statement.where(
            tuple_(orders_table.c.date_created, orders_table.c.id) < tuple_(moment, order_id)
        )
    rows = db.session.execute(statement).all()
    page = [_summary(row._mapping) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return RecentPage(page, encode_cursor(last.date_created, last.id) if last else None)


def _summary(row: Any) -> dict[str, Any]:
    summary = {key: row[key] for key in (*SUMMARY_FIELDS, SUMMARY_COUNT)}
    summary["date_created"] = format_utc(summary["date_created"])
    return summary
