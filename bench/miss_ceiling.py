"""The cold-read ceiling: a bare WSGI app whose every GET /order/<id> is one indexed read of the
stored bytes, as the service's miss is (a prepared statement on an autocommit connection that the
request thread keeps), and nothing else: no Flask, cache, metrics, access line or request id. Run
under the service's own gunicorn settings (bench/ceiling.conf.py), it is the most that gunicorn,
psycopg2 and PostgreSQL allow a miss on this machine, and what the service's cold reads compare with.
BENCH_MISS_CEILING_DSN is the libpq DSN of the database."""

import os
import threading

import psycopg2

from app.data.store import ORDER_BODY, PREPARE_ORDER_BODY

_PREFIX = "/order/"
_HELD = threading.local()
_JSON = ("Content-Type", "application/json")


def _connection():
    connection = getattr(_HELD, "connection", None)
    if connection is None:
        connection = psycopg2.connect(os.environ["BENCH_MISS_CEILING_DSN"])
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(PREPARE_ORDER_BODY)
        _HELD.connection = connection
    return connection


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    row = None
    if path.startswith(_PREFIX):
        with _connection().cursor() as cursor:
            cursor.execute(ORDER_BODY, (path[len(_PREFIX):],))
            row = cursor.fetchone()
    body = bytes(row[1]) if row else b"{}"
    start_response("200 OK" if row or not path.startswith(_PREFIX) else "404 Not Found",
                   [_JSON, ("Content-Length", str(len(body)))])
    return [body]
