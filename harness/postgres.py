"""Databases of their own on the configured PostgreSQL server, and outages of them."""

import time
import uuid

import psycopg2
import psycopg2.errors
from sqlalchemy.engine import make_url


def admin_dsn(url: str, database: str = "postgres") -> str:
    """A libpq DSN for `database` on the server of `url` (SQLAlchemy form), as its user."""
    parsed = make_url(url)
    return (
        f"host={parsed.host} port={parsed.port or 5432} user={parsed.username} "
        f"password={parsed.password or ''} dbname={database} connect_timeout=5"
    )


def _admin_execute(url: str, statement: str, params: tuple = ()) -> None:
    connection = psycopg2.connect(admin_dsn(url))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
    finally:
        connection.close()


def create_database(server_url: str, prefix: str) -> str:
    """A new, empty database on the server of `server_url`; returns its URL."""
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
