"""The local PostgreSQL cluster's security (devstack/postgres.py runs it on every `make infra`): TLS
(`ssl = on`, with a certificate signed by the local CA, devstack/certs.py) and two roles.

- the owner (MIGRATION_DATABASE_URL's role): owns the database, runs `flask db upgrade`, may create
  databases (the tests make their own);
- the service (DATABASE_URL's role): may log in, nothing more here. What it may do in the database
  (SELECT and INSERT, no UPDATE, DELETE or DDL) is granted by the migrations themselves
  (app/data/privileges.py), so a managed database gets the same.

The owner is made a member of the service's role: a role may end its members' sessions, which is
how the tests simulate an outage and drop their databases (`DROP DATABASE … WITH (FORCE)`).

Runs as the cluster's superuser over the Unix socket (trust). A role that exists keeps its
password; a new one gets the password of its URL, sent as a SCRAM verifier made here (the server
never sees the password itself, and it is on no command line). Both logins are then tried over
TCP with `sslmode=verify-full` against the CA, which proves TLS and the roles together.
"""

import os
import time
from pathlib import Path

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import encrypt_password
from sqlalchemy.engine import URL

from config import private_dir
from devstack.certs import ensure_ca, ensure_server_certificate
from devstack.output import Failure, say

TLS_SETTINGS_TIMEOUT_S = 10.0


def server_certificate(pg_dir: Path, data_dir: Path, ca_dir: Path, hosts: list[str]) -> tuple[Path, Path]:
    """The server's certificate and key in `pg_dir`/tls, owned by the user the server runs as
    (the data directory's owner: PostgreSQL refuses a key another user could read)."""
    owner = os.stat(data_dir)
    tls_dir = private_dir(pg_dir / "tls", owner=owner.st_uid, group=owner.st_gid)
    cert, key = tls_dir / "server.crt", tls_dir / "server.key"
    ensure_server_certificate(ensure_ca(ca_dir), key, cert, hosts, owner=(owner.st_uid, owner.st_gid))
    return cert, key


def enable_tls(superuser: "psycopg2.extensions.connection", cert: Path, key: Path) -> None:
    """`ssl = on` with these files (ALTER SYSTEM: kept in postgresql.auto.conf, applied by a reload,
    no restart), then wait until the server says it is on."""
    wanted = {"ssl": "on", "ssl_cert_file": str(cert), "ssl_key_file": str(key)}
    with superuser.cursor() as cursor:
        for name, value in wanted.items():
            cursor.execute(sql.SQL("ALTER SYSTEM SET {} = %s").format(sql.Identifier(name)), (value,))
        cursor.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + TLS_SETTINGS_TIMEOUT_S
    while _settings(superuser, list(wanted)) != wanted:
        if time.monotonic() > deadline:
            raise Failure("PostgreSQL did not turn TLS on after a reload (a key it may not read?); "
                          "read its log")
        time.sleep(0.1)


def _settings(connection: "psycopg2.extensions.connection", names: list[str]) -> dict[str, str]:
    # pg_settings of a new transaction: a reload reaches a session between its commands.
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (names,))
        return dict(cursor.fetchall())


def _role_exists(cursor: "psycopg2.extensions.cursor", role: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    return cursor.fetchone() is not None


def _create_role(cursor: "psycopg2.extensions.cursor", url: URL, attributes: str) -> bool:
    """The role of `url`, with its password, when it does not exist; True if it was created."""
    if _role_exists(cursor, url.username):
        return False
    verifier = encrypt_password(url.password or "", url.username, cursor.connection, "scram-sha-256")
    cursor.execute(sql.SQL("CREATE ROLE {} LOGIN " + attributes + " PASSWORD %s").format(
        sql.Identifier(url.username)), (verifier,))
    return True


def ensure_roles(superuser: "psycopg2.extensions.connection", owner: URL, service: URL) -> list[str]:
    """The owner (with its database) and the service's role; returns what was created."""
    done = []
    with superuser.cursor() as cursor:
        if _create_role(cursor, owner, "CREATEDB"):
            done.append(f"created role {owner.username} (the owner: migrations)")
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (owner.database,))
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(owner.database), sql.Identifier(owner.username)))
            done.append(f"created database {owner.database}")
        if service.username != owner.username:
            if _create_role(cursor, service, "NOCREATEDB NOCREATEROLE"):
                done.append(f"created role {service.username} (the service: SELECT and INSERT, granted by "
                            "the migrations)")
            cursor.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(service.username),
                                                            sql.Identifier(owner.username)))
    return done


def check_login(url: URL, cafile: Path) -> None:
    """Log in as `url` over TCP with TLS verified against `cafile` (verify-full), or raise with
    libpq's reason (which never holds the password) and the URL masked."""
    try:
        connection = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username,
                                      password=url.password or "", dbname=url.database, connect_timeout=5,
                                      sslmode="verify-full", sslrootcert=str(cafile))
    except psycopg2.OperationalError as exc:
        reason = " ".join(str(exc).split())
        shown = url.render_as_string(hide_password=True)
        raise Failure(f"{shown} cannot log in: {reason} (the role existed before with another password? fix "
                      "the URL, or ALTER ROLE … PASSWORD)") from None
    connection.close()


def up(pg_dir: Path, data_dir: Path, port: int, ca_dir: Path, hosts: list[str], owner: URL,
       service: URL) -> None:
    cert, key = server_certificate(pg_dir, data_dir, ca_dir, hosts)
    superuser = psycopg2.connect(host=str(pg_dir), port=port, user="postgres", dbname="postgres")
    superuser.autocommit = True
    try:
        enable_tls(superuser, cert, key)
        for line in ensure_roles(superuser, owner, service):
            say(f"PostgreSQL: {line}")
    finally:
        superuser.close()
    cafile = ca_dir / "ca.crt"
    for url in {owner, service}:
        check_login(url, cafile)
    say(f"PostgreSQL: TLS on (verify-full with sslrootcert={cafile}); roles {owner.username} (owner)"
        + (f" and {service.username} (service)" if service.username != owner.username else ""))

