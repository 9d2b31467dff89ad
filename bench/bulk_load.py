"""Growing a bench database to millions of orders in minutes, without Kafka.

A few thousand real orders from the seed generator are stored by `save_orders` (the service's own
code), and PostgreSQL then copies them, chunk by chunk, into new orders: each copy gets a new id,
a new random-looking order_uid (also its payment.transaction, as the contract says) and a new
date_created spread over the generator's five years, and its served bytes are the template's with
those three values replaced, hashed by PostgreSQL into content_hash as the service does. Every
other column comes from the template, and every column of the table is filled whatever the
migrations add (a column the loader does not know is copied). The rows go in in id order, so the
order_uid and date_created indexes grow by random inserts, like a table filled over years.

`verify` reads a sample back through the service's data layer and checks each against its hash.
"""

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2
from sqlalchemy.engine import make_url

from app import create_app
from app.data.store import get_order, save_orders
from app.documents import ServedOrder, encode_document, format_utc
from app.extensions import db
from app.seed import OrderFactory
from app.seed.common import WINDOW_END, WINDOW_START
from config import Config
from harness.postgres import admin_dsn

TEMPLATE_SEED = 7
_STAGING = "bulk_templates"


@dataclass(frozen=True)
class LoadReport:
    orders: int
    items: int
    seconds: float


def _connect(database_url: str):
    connection = psycopg2.connect(admin_dsn(database_url, make_url(database_url).database))
    connection.autocommit = False
    return connection


def store_templates(database_url: str, count: int) -> list[ServedOrder]:
    """`count` generated orders stored through save_orders (they are the table's first orders)."""
    served = [ServedOrder.of(order) for order in OrderFactory(TEMPLATE_SEED).orders(count)]
    app = create_app(Config, {"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        for start in range(0, len(served), 500):
            save_orders(served[start:start + 500])
        db.engine.dispose()
    return served


def _stage(cursor, served: list[ServedOrder]) -> None:
    cursor.execute(f"CREATE TEMPORARY TABLE {_STAGING} (slot int PRIMARY KEY, order_id bigint, "
                   "uid text, served_date text, body text)")
    cursor.execute(f"INSERT INTO {_STAGING} SELECT s.slot, o.id, s.uid, s.served_date, s.body "
                   "FROM json_to_recordset(%s) AS s(slot int, uid text, served_date text, body text) "
                   "JOIN orders o ON o.order_uid = s.uid",
                   (json.dumps([{"slot": slot, "uid": order.order_uid, "body": order.body.decode(),
                                 "served_date": format_utc(order.date_created)}
                                for slot, order in enumerate(served)]),))
    cursor.execute(f"SELECT count(*) FROM {_STAGING}")
    assert cursor.fetchone()[0] == len(served), "some templates were not stored"


def _columns(cursor, table: str) -> list[str]:
    cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                   "AND table_schema = current_schema() ORDER BY ordinal_position", (table,))
    return [name for (name,) in cursor.fetchall()]


# Per new order i: its template's slot, a new uid and a new instant within the generator's window,
# in whole seconds. The uid has the generator's length (20 to 32) and alphabet (a-z, 0-9: base64 of
# a digest, lower-cased, its two other symbols mapped to letters), so that new orders' uids fall
# among the loaded ones all over the index, as they would in a table filled by the service.
_NEW = """
    SELECT i, i %% {templates} AS slot,
           substr(translate(lower(encode(sha256(i::text::bytea), 'base64')), '+/', 'qz'),
                  1, 20 + (i %% 13)::int) AS uid,
           to_timestamp({start} + ('x' || substr(md5(i::text || 'd'), 1, 8))::bit(32)::bigint %% {span})
             AS created
    FROM generate_series(%(low)s::bigint, %(high)s::bigint) AS i
"""
_NEW_BODY = """replace(replace(replace(s.body,
      '"order_uid":"' || s.uid || '"', '"order_uid":"' || n.uid || '"'),
      '"transaction":"' || s.uid || '"', '"transaction":"' || n.uid || '"'),
      '"date_created":"' || s.served_date || '"',
      '"date_created":"' || to_char(n.created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '"')"""
_ORDER_EXPRESSIONS = {
    "id": "n.i",
    "order_uid": "n.uid",
    "payment_transaction": "n.uid",
    "date_created": "n.created",
    "content_hash": "sha256(convert_to(n.body, 'UTF8'))",
    "body": "convert_to(n.body, 'UTF8')",
    "ingested_at": "now()",
}


def _statements(cursor, templates: int) -> tuple[str, str]:
    new = _NEW.format(templates=templates, start=WINDOW_START, span=WINDOW_END - WINDOW_START)
    order_columns = _columns(cursor, "orders")
    order_values = [_ORDER_EXPRESSIONS.get(name, f"t.{name}") for name in order_columns]
    orders = (
        f"INSERT INTO orders ({', '.join(order_columns)}) "
        f"SELECT {', '.join(order_values)} FROM ("
        f"  SELECT n.*, s.order_id AS template_id, {_NEW_BODY} AS body"
        f"  FROM ({new}) AS n JOIN {_STAGING} s USING (slot)) AS n "
        "JOIN orders t ON t.id = n.template_id ORDER BY n.i"
    )
    item_columns = _columns(cursor, "order_items")
    item_values = ["n.i" if name == "order_id" else f"t.{name}" for name in item_columns]
    items = (
        f"INSERT INTO order_items ({', '.join(item_columns)}) "
        f"SELECT {', '.join(item_values)} FROM ({new}) AS n JOIN {_STAGING} s USING (slot) "
        "JOIN order_items t ON t.order_id = s.order_id ORDER BY n.i, t.position"
    )
    return orders, items


def grow(database_url: str, total: int, say: Callable[[str], None], templates: int = 5000,
         chunk: int = 50_000) -> LoadReport:
    """Grow the (migrated, empty) database to `total` orders; progress through `say`."""
    started = time.monotonic()
    templates = min(templates, total)
    served = store_templates(database_url, templates)
    say(f"load: {templates:,} template orders stored through save_orders")
    connection = _connect(database_url)
    items = sum(len(order.order["items"]) for order in served)
    try:
        with connection.cursor() as cursor:
            # The loader's own session: its commits need not wait for the disk (the service's do).
            cursor.execute("SET synchronous_commit = off")
            _stage(cursor, served)
            insert_orders, insert_items = _statements(cursor, templates)
            cursor.execute("SELECT max(id) FROM orders")
            next_id = cursor.fetchone()[0] + 1
            done = templates
            while done < total:
                size = min(chunk, total - done)
                bounds = {"low": next_id, "high": next_id + size - 1}
                cursor.execute(insert_orders, bounds)
                cursor.execute(insert_items, bounds)
                items += cursor.rowcount
                connection.commit()
                next_id += size
                done += size
                elapsed = time.monotonic() - started
                eta = elapsed / (done - templates) * (total - done) if done > templates else 0
                say(f"load: {done:,} of {total:,} orders ({done / total:.0%}), {elapsed:.0f} s, "
                    f"about {eta:.0f} s to go")
            cursor.execute("SELECT setval(pg_get_serial_sequence('orders', 'id'), max(id)) FROM orders")
            connection.commit()
    finally:
        connection.close()
    return LoadReport(total, items, round(time.monotonic() - started, 1))


def verify(database_url: str, sample: int = 200) -> int:
    """Read `sample` random orders back through the data layer (get_order, from the relational
    rows) and check that each one's served bytes hash to its content_hash; the number checked."""
    app = create_app(Config, {"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        rows = db.session.execute(db.text(
            "SELECT order_uid, content_hash FROM orders WHERE id IN "
            "(SELECT 1 + (random() * (SELECT max(id) FROM orders))::bigint FROM generate_series(1, :n))"),
            {"n": sample}).all()
        for uid, digest in rows:
            document = get_order(uid)
            served = encode_document(document) if document else b""
            assert hashlib.sha256(served).digest() == bytes(digest), (
                f"order {uid} does not read back as the bytes its hash was made of")
        db.engine.dispose()
    return len(rows)
