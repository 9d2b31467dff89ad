"""The one place that stores and reads orders: the API, the web page, the consumer and the CLI all go
through here. No HTTP here: what a page or a summary looks like is the API's business."""

import hashlib
import io
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg2
from flask import Flask
from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.exc import DBAPIError

from app.data.models import items_table, orders_table
from app.documents import ServedOrder, encode_document, in_contract_order
from app.extensions import db
from app.validation.schema import ITEM_SCHEMA, NESTED_GROUPS, TOP_LEVEL_FIELDS
from config import READS_BIND

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
# top-level fields, then delivery_* and payment_*, then content_hash and body.
_ORDER_COLUMNS = [column.name for column in orders_table.columns if column.name not in ("id", "ingested_at")]
# A batch's new orders are copied into a temporary table of the session, then inserted from it in
# one statement: COPY's text costs far less to write here and to parse in PostgreSQL than a
# statement of quoted literals (bench/README.md). Its rows go at commit, or with a rollback.
_INCOMING = "orders_incoming"
_CREATE_INCOMING = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_INCOMING} ON COMMIT DELETE ROWS AS "
    f"SELECT {', '.join(_ORDER_COLUMNS)} FROM {orders_table.name} WITH NO DATA"
)
_COPY_INCOMING = f"COPY {_INCOMING} ({', '.join(_ORDER_COLUMNS)}) FROM STDIN"
# Sorted by uid so that two overlapping batches lock rows in the same order (no deadlock).
_INSERT_ORDERS = (
    f"INSERT INTO {orders_table.name} ({', '.join(_ORDER_COLUMNS)}) "
    f"SELECT {', '.join(_ORDER_COLUMNS)} FROM {_INCOMING} ORDER BY order_uid "
    "ON CONFLICT (order_uid) DO NOTHING RETURNING id, order_uid"
)


def _prepare(served: ServedOrder | dict[str, Any]) -> _Prepared:
    """The order's row for `orders`, as a tuple in _ORDER_COLUMNS' order. Its content_hash is the
    SHA-256 of the served bytes: equal for a redelivery (even in another key order or date offset),
    different for any other content."""
    if not isinstance(served, ServedOrder):
        served = ServedOrder.of(served)
    order, moment = served.order, served.date_created
    digest = hashlib.sha256(served.body).digest()
    top = [moment if name == "date_created" else order[name] for name in TOP_LEVEL_FIELDS]
    nested = [order[group][name] for group, schema in NESTED_GROUPS.items() for name in schema]
    return _Prepared(order["order_uid"], (*top, *nested, digest, served.body), order["items"], digest)


def save_orders(orders: Sequence[ServedOrder | dict[str, Any]]) -> list[SaveOutcome]:
    """Store a batch of validated orders in one transaction; one outcome per input, in order.
    The consumer passes ServedOrders (their bytes built once, for the hash here and for its cache).

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
        # The INSERT … SELECT takes the rows in uid order itself (_INSERT_ORDERS).
        stored_ids = _insert_new(list(first_by_uid.values()))
        _insert_items(first_by_uid, stored_ids)
        existing = _stored_hashes([uid for uid in first_by_uid if uid not in stored_ids])
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return _outcomes(prepared, first_by_uid, stored_ids, existing)


def _insert_new(candidates: list[_Prepared]) -> dict[str, int]:
    if not candidates:
        return {}

    def copy_then_insert(cursor: Any) -> list[tuple[int, str]]:
        cursor.execute(_CREATE_INCOMING)
        _copy(cursor, _COPY_INCOMING, [entry.row for entry in candidates])
        cursor.execute(_INSERT_ORDERS)
        return cursor.fetchall()

    return {uid: order_id for order_id, uid in _run(copy_then_insert)}


_ITEM_COLUMNS = [column.name for column in items_table.columns]  # order_id, position, the item fields
_COPY_ITEMS = f"COPY {items_table.name} ({', '.join(_ITEM_COLUMNS)}) FROM STDIN"


def _insert_items(first_by_uid: dict[str, _Prepared], stored_ids: dict[str, int]) -> None:
    rows = [
        (order_id, position, *(item[field] for field in ITEM_FIELDS))
        for uid, order_id in stored_ids.items()
        for position, item in enumerate(first_by_uid[uid].items)
    ]
    if rows:
        _run(lambda cursor: _copy(cursor, _COPY_ITEMS, rows))


def _run(work: Callable[[Any], Any]) -> Any:
    """`work` with a cursor of the session's own connection (so in its transaction), psycopg2's
    errors raised as SQLAlchemy's (IntegrityError, OperationalError...) like any query's. The batch
    writes bypass SQLAlchemy's per-row parameter handling, which cost more than PostgreSQL's own
    work on the rows (bench/README.md)."""
    cursor = db.session.connection().connection.cursor()
    try:
        return work(cursor)
    except psycopg2.Error as exc:
        statement = (cursor.query or b"").decode(errors="replace")
        raise DBAPIError.instance(statement, None, exc, psycopg2.Error) from exc
    finally:
        cursor.close()


# COPY's text format: a tab between values, a newline after each row, and a backslash before any
# of these (and before a backslash) inside a value. bytea in its hex form, itself escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_COPY_TEXT: dict[type, Callable[[Any], str]] = {
    str: lambda value: value.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE.search(value) else value,
    int: int.__str__,
    datetime: datetime.isoformat,
    bytes: lambda value: "\\\\x" + value.hex(),
}


def _copy(cursor: Any, statement: str, rows: list[tuple]) -> None:
    """COPY `rows` in. Values are validated orders: text without NUL, integers, aware datetimes,
    bytes; never None (every column is NOT NULL)."""
    text = "".join("\t".join([_COPY_TEXT[type(value)](value) for value in row]) + "\n" for row in rows)
    cursor.copy_expert(statement, io.BytesIO(text.encode()), size=1 << 20)


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


def order_body(order_uid: str, app: Flask) -> bytes | None:
    """The order's served bytes (the body of GET /order/<order_uid>), None if it is unknown: one
    indexed read of the row the consumer stored them in, on the reads engine. It needs no app
    context, so that a miss does not pay for one (bench/README.md): only a thread's first read, which
    takes its connection, and an order stored before the body column existed (migration 0002) and not
    yet backfilled, which is assembled from its rows as before, push one of `app`."""
    row = _stored_row(app, order_uid)
    if row is None:
        return None
    order_id, body = row
    if body is not None:
        return bytes(body)
    with app.app_context():
        return _assembled_bodies([order_id])[order_uid]


# A page of the most recent orders is keyed by (date_created, id), newest first.
PageKey = tuple[datetime, int]


def _newest_first(statement: Select, before: PageKey | None) -> Select:
    """`statement` on `orders` ordered newest first by (date_created, id), from `before` on."""
    statement = statement.order_by(orders_table.c.date_created.desc(), orders_table.c.id.desc())
    if before is None:
        return statement
    return statement.where(tuple_(orders_table.c.date_created, orders_table.c.id) < tuple_(*before))


@dataclass(frozen=True, slots=True)
class RecentBodies:
    bodies: list[tuple[str, bytes]]
    next_key: PageKey | None


def latest_bodies(limit: int, before: PageKey | None = None) -> RecentBodies:
    """(order_uid, served bytes) of up to `limit` most recent orders from `before` on, newest first
    (the cache's warm-up reads them a page at a time); `next_key` is where the next page starts,
    None after the oldest."""
    statement = select(orders_table.c.id, orders_table.c.order_uid, orders_table.c.body,
                       orders_table.c.date_created).limit(limit)
    rows = db.session.execute(_newest_first(statement, before)).all()
    assembled = _assembled_bodies([row.id for row in rows if row.body is None])
    bodies = [(row.order_uid, bytes(row.body) if row.body is not None else assembled[row.order_uid])
              for row in rows]
    last = rows[-1] if rows and len(rows) == limit else None
    return RecentBodies(bodies, (last.date_created, last.id) if last else None)


def _assembled_bodies(order_ids: list[int]) -> dict[str, bytes]:
    """The served bytes of orders that have none stored (before migration 0002), from their rows."""
    if not order_ids:
        return {}
    documents = read_documents(select(orders_table).where(orders_table.c.id.in_(order_ids)))
    return {document["order_uid"]: encode_document(document) for document in documents}


# A prepared statement per connection: PostgreSQL parses and plans the read once, not at every miss
# (bench/README.md). It names its columns, so a migration that adds others leaves it valid. Public
# for bench/miss_ceiling.py, whose bare read must be this one.
PREPARE_ORDER_BODY = "PREPARE order_body (text) AS SELECT id, body FROM orders WHERE order_uid = $1"
ORDER_BODY = "EXECUTE order_body (%s)"
# Where each app keeps its threads' own connections of the reads engine (a threading.local).
_HELD = "order_service.held_read_connections"


def init_held_connections(app: Flask) -> None:
    """The place where each request thread of `app` keeps its reads connection (_hold_connection)."""
    app.extensions[_HELD] = threading.local()


def _stored_row(app: Flask, order_uid: str) -> tuple[int, Any] | None:
    """(id, body) of the order, on this thread's connection of `app`'s reads engine. A connection
    that turns out to be closed (PostgreSQL restarted, a network cut) is dropped and the read tried
    once more on a new one; any other error is raised as SQLAlchemy's."""
    held = app.extensions[_HELD]
    for attempt in (1, 2):
        connection = None
        try:
            connection = getattr(held, "connection", None) or _hold_connection(app, held)
            with connection.cursor() as cursor:
                cursor.execute(ORDER_BODY, (order_uid,))
                return cursor.fetchone()
        except psycopg2.Error as exc:
            broken = connection is not None and connection.closed
            if broken:
                held.connection = None
                connection.close()
            if attempt == 1 and broken:
                continue
            raise DBAPIError.instance(ORDER_BODY, (order_uid,), exc, psycopg2.Error) from exc
    raise AssertionError("unreachable")


def _hold_connection(app: Flask, held: threading.local) -> Any:
    """A connection of the reads engine (config.READS_BIND: autocommit, so a read is one round trip)
    that this thread keeps, the statement prepared on it: a miss then costs no pool checkout,
    check-in or reset (bench/README.md). It leaves the pool for good, so the pool does not count
    it: each request thread holds one (gunicorn's threads live as long as their worker)."""
    with app.app_context():
        pooled = db.engines[READS_BIND].raw_connection()
    pooled.detach()
    connection = pooled.dbapi_connection
    try:
        with connection.cursor() as cursor:
            cursor.execute(PREPARE_ORDER_BODY)
    except BaseException:
        connection.close()
        raise
    held.connection = connection
    return connection


def get_order(order_uid: str) -> dict[str, Any] | None:
    """The stored order as it came in (date_created in the served UTC form), or None."""
    documents = read_documents(select(orders_table).where(orders_table.c.order_uid == order_uid))
    return documents[0] if documents else None


def read_documents(order_query: Select) -> list[dict[str, Any]]:
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
class RecentRows:
    rows: list[dict[str, Any]]
    next_key: PageKey | None


def recent_orders(limit: int, columns: dict[str, tuple[str, ...]], count_label: str,
                  before: PageKey | None = None) -> RecentRows:
    """The most recent orders (by date_created, newest first), `limit` of them from `before` on:
    for each, the named `columns` (key -> the order field's path, e.g. ("payment", "amount")) and
    its number of items as `count_label`; `next_key` is where the next page starts, if any."""
    item_count = (
        select(func.count())
        .where(items_table.c.order_id == orders_table.c.id)
        .scalar_subquery()
        .label(count_label)
    )
    # Nested fields are columns named <group>_<field> (models.py).
    fields = [orders_table.c["_".join(path)].label(key) for key, path in columns.items()]
    statement = select(orders_table.c.id, orders_table.c.date_created.label("_date_created"), *fields,
                       item_count).limit(limit + 1)
    rows = db.session.execute(_newest_first(statement, before)).all()
    page = [{key: row._mapping[key] for key in (*columns, count_label)} for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return RecentRows(page, (last._date_created, last.id) if last else None)
