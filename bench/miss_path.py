"""What one cache miss of GET /order/<id> costs, by way of reading the order: the worker's CPU, the
PostgreSQL backend's CPU and the wall time per read, one thread, on a cluster of the bench's own
(nothing else runs on it, so its CPU is the reads').

    python -m bench.miss_path [--orders 20000] [--reads 4000] [--rounds 3]

Each round runs every variant once, in turn (A, B, C, ... then again), on random stored ids:
- rows: today's miss before the body column, get_order (two queries through the ORM session) and
  the served bytes encoded from the document;
- session: the stored bytes in one indexed read through the ORM session, each read in an app
  context of its own like a request;
- autocommit ...: the same read on an engine of autocommit connections (no BEGIN / ROLLBACK), with
  and without the pool's pre-ping (a SELECT 1 at every checkout), and with a prepared statement;
- order_body: what the service does (autocommit, prepared, on a connection the thread keeps, no app
  context);
- built by PostgreSQL: the served bytes built in SQL from the rows in one query, checked against
  content_hash in Python.
"""

import argparse
import hashlib
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, text

from app import create_app
from app.data.store import get_order, order_body, save_orders
from app.documents import encode_document
from app.extensions import db
from app.seed import OrderFactory
from app.validation.schema import ITEM_SCHEMA, ORDER_SCHEMA
from bench.cpu import listening_pid, tree_us
from bench.run import Progress, migrate
from config import Config, engine_options
from harness.cluster import OwnCluster
from harness.postgres import create_database
from harness.service import exit_through_finally_on_sigterm

_BODY = "SELECT id, body FROM orders WHERE order_uid = %s"
_SESSION_BODY = text("SELECT body FROM orders WHERE order_uid = :uid")


def _text_json(column: str, rules: dict[str, Any]) -> str:
    """SQL for one value in json.dumps' compact form (ensure_ascii off)."""
    if "int64" in rules:
        return f"{column}::text"
    if rules.get("rfc3339"):
        utc = f"({column} AT TIME ZONE 'UTC')"
        return (f"""'"' || to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS') || CASE WHEN """
                f"""extract(microseconds FROM {utc})::int %% 1000000 <> 0 THEN to_char({utc}, '.US') """
                """ELSE '' END || 'Z"'""")
    return f"to_json({column})::text"


def _object(fields: list[tuple[str, str, dict]]) -> str:
    parts = []
    for index, (key, column, rules) in enumerate(fields):
        parts.append(f"'{',' if index else '{'}{json.dumps(key)}:' || {_text_json(column, rules)}")
    return " || ".join(parts) + " || '}'"


def built_by_postgres_sql() -> str:
    """One query: the order's row, its items aggregated in position order, the JSON text in the
    contract's field order, and content_hash to check it against."""
    pieces = []
    for index, (name, rules) in enumerate(ORDER_SCHEMA.items()):
        lead = f"'{',' if index else '{'}{json.dumps(name)}:'"
        if name == "items":
            item = _object([(field, f"i.{field}", child) for field, child in ITEM_SCHEMA.items()])
            value = (f"'[' || coalesce((SELECT string_agg({item}, ',' ORDER BY i.position) "
                     "FROM order_items i WHERE i.order_id = o.id), '') || ']'")
        elif rules.get("type") == "dict":
            value = _object([(field, f"o.{name}_{field}", child) for field, child in rules["schema"].items()])
        else:
            value = _text_json(f"o.{name}", rules)
        pieces.append(f"{lead} || {value}")
    return f"SELECT o.content_hash, {' || '.join(pieces)} || '}}' FROM orders o WHERE o.order_uid = %s"


def variants(app, url: str) -> dict[str, Callable[[str], bytes | None]]:
    options = engine_options(app.config)
    autocommit = create_engine(url, **{**options, "isolation_level": "AUTOCOMMIT"})
    no_ping = create_engine(url, **{**options, "isolation_level": "AUTOCOMMIT", "pool_pre_ping": False})
    built_sql = built_by_postgres_sql()

    def rows(uid: str) -> bytes | None:
        with app.app_context():
            document = get_order(uid)
            return encode_document(document) if document else None

    def session(uid: str) -> bytes | None:
        with app.app_context():
            row = db.session.execute(_SESSION_BODY, {"uid": uid}).first()
            return bytes(row[0]) if row else None

    def service(uid: str) -> bytes | None:
        return order_body(uid, app)

    def raw(engine, statement: str, prepare: str | None = None) -> Callable[[str], Any]:
        def read(uid: str) -> Any:
            connection = engine.raw_connection()
            try:
                cursor = connection.cursor()
                if prepare and not connection.info.get("prepared"):
                    cursor.execute(prepare)
                    connection.info["prepared"] = True
                cursor.execute(statement, (uid,))
                row = cursor.fetchone()
                cursor.close()
                return row
            finally:
                connection.close()
        return read

    ping_read = raw(autocommit, _BODY)
    plain_read = raw(no_ping, _BODY)
    prepared_read = raw(no_ping, "EXECUTE order_body(%s)", prepare="PREPARE order_body(text) AS "
                        "SELECT id, body FROM orders WHERE order_uid = $1")
    built_read = raw(no_ping, built_sql)

    def body_of(read: Callable[[str], Any]) -> Callable[[str], bytes | None]:
        return lambda uid: (bytes(row[1]) if (row := read(uid)) else None)

    def built(uid: str) -> bytes | None:
        row = built_read(uid)
        if row is None:
            return None
        body = row[1].encode()
        assert hashlib.sha256(body).digest() == bytes(row[0]), f"built bytes of {uid} differ"
        return body

    return {"rows": rows, "session": session, "autocommit, pre-ping": body_of(ping_read),
            "autocommit": body_of(plain_read), "autocommit, prepared": body_of(prepared_read),
            "order_body": service, "built by PostgreSQL": built}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.miss_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--reads", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    exit_through_finally_on_sigterm()
    say = Progress()
    with OwnCluster() as cluster:
        url = create_database(cluster.url(), "orders_miss")
        migrate(url)
        app = create_app(Config, {"SQLALCHEMY_DATABASE_URI": url})
        orders = list(OrderFactory(11).orders(args.orders))
        with app.app_context():
            for start in range(0, len(orders), 500):
                save_orders(orders[start:start + 500])
            db.session.execute(text("ANALYZE orders, order_items"))
            db.session.commit()
        say(f"{args.orders:,} orders stored")
        uids = [order["order_uid"] for order in orders]
        reads = variants(app, url)
        expected = {uid: order_body_of(app, uid) for uid in random.Random(3).sample(uids, 50)}
        for name, read in reads.items():
            assert all(read(uid) == body for uid, body in expected.items()), f"{name} reads other bytes"
        postmaster = listening_pid(cluster.port)
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in reads}
        for round_number in range(args.rounds):
            for name, read in reads.items():
                sample = random.Random(round_number).choices(uids, k=args.reads)
                pg_before, cpu_before = tree_us(postmaster), time.process_time()
                wall_before = time.perf_counter()
                for uid in sample:
                    read(uid)
                wall = (time.perf_counter() - wall_before) / args.reads * 1e6
                cpu = (time.process_time() - cpu_before) / args.reads * 1e6
                pg = (tree_us(postmaster) - pg_before) / args.reads
                figures[name].append((wall, cpu, pg))
                say(f"round {round_number + 1}, {name}: {wall:.0f} µs a read, worker CPU {cpu:.0f} µs, "
                    f"PostgreSQL CPU {pg:.0f} µs")
        print("\n| variant | wall µs a read | worker CPU µs | PostgreSQL CPU µs |")
        print("| --- | ---: | ---: | ---: |")
        for name, rows in figures.items():
            print(f"| {name} | " + " | ".join(
                f"{statistics.median(row[i] for row in rows):.0f}" for i in range(3)) + " |")


def order_body_of(app, uid: str) -> bytes:
    with app.app_context():
        return encode_document(get_order(uid))


if __name__ == "__main__":
    main()
