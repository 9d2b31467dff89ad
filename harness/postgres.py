"""Databases of their own on the configured PostgreSQL server, and outages of them.

Two roles, as in production: the service connects as DATABASE_URL's (SELECT and INSERT only),
while creating, migrating, emptying, closing and dropping a database is the owner's work
(MIGRATION_DATABASE_URL's credentials). With one role configured, both are the same.
"""

import time
import uuid
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2.extensions import make_dsn
from sqlalchemy.engine import make_url

from config import Config


def owner_url(url: str) -> str:
    """`url`'s database as its owner: on the configured server, MIGRATION_DATABASE_URL (server,
    credentials, TLS settings) with `url`'s database; on another server (a cluster of a bench's
    own, whose superuser `url` names), `url` itself."""
    given, owner = make_url(url), make_url(Config.MIGRATION_DATABASE_URL)
    if (given.host, given.port or 5432) != (owner.host, owner.port or 5432):
        return url
    return owner.set(database=given.database).render_as_string(hide_password=False)


def app_database(url: str) -> dict[str, Any]:
    """create_app overrides for the database of `url`: the service's URL, and its owner's for
    `flask db upgrade`."""
    return {"SQLALCHEMY_DATABASE_URI": url, "MIGRATION_DATABASE_URL": owner_url(url)}


def dsn(url: str, database: str | None = None) -> str:
    """A libpq DSN for `url` (SQLAlchemy form, its query's TLS settings included), on `database`
    when given."""
    parsed = make_url(url)
    return make_dsn(host=parsed.host, port=parsed.port or 5432, user=parsed.username,
                    password=parsed.password or "", dbname=database or parsed.database, connect_timeout=5,
                    **dict(parsed.query))


def admin_dsn(url: str, database: str = "postgres") -> str:
    """A libpq DSN for `database` on the server of `url` (SQLAlchemy form), as the owner."""
    return dsn(owner_url(url), database)


def _admin_execute(url: str, statement: str, params: tuple | dict = (), database: str = "postgres") -> None:
    connection = psycopg2.connect(admin_dsn(url, database))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
    finally:
        connection.close()


def create_database(server_url: str, prefix: str) -> str:
    """A new, empty database on the server of `server_url`, owned by the owner; returns its URL
    with `server_url`'s credentials (the service's, for Config.SQLALCHEMY_DATABASE_URI)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin_execute(server_url, f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str, timeout_s: float = 30) -> None:
    """Drop the database, waiting out an autovacuum worker in it: WITH (FORCE) may not end a
    superuser's process, so the drop is retried until the worker is done."""
    statement = f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _admin_execute(url, statement)
            return
        except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ObjectInUse):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def execute_as_owner(url: str, statement: str, params: tuple | dict = ()) -> None:
    """One statement in `url`'s database as its owner: what the service may not do (delete,
    truncate), done as an operator would."""
    _admin_execute(url, statement, params, database=make_url(url).database)


def empty_orders(url: str) -> None:
    """Remove every order."""
    execute_as_owner(url, "TRUNCATE orders CASCADE")


class database_outage:
    """Makes the database of `database_url` refuse every connection, then lets it back in: a real
    outage as the service sees it (its connections drop and new ones are refused)."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.name = make_url(database_url).database

    def __enter__(self) -> "database_outage":
        _admin_execute(self.url, f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        _admin_execute(self.url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                       (self.name,))
        return self

    def __exit__(self, *exc: object) -> None:
        _admin_execute(self.url, f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')
