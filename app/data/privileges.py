"""What the service's role may do in the database, granted by `flask db upgrade` (the owner's
role, MIGRATION_DATABASE_URL) to DATABASE_URL's role when the two differ.

Orders are immutable and the schema is the migrations' business, so the service may SELECT and
INSERT, and nothing else: no UPDATE, DELETE or TRUNCATE, no DDL (it owns nothing, and PostgreSQL 15
gives no one but the owner CREATE in the public schema). It may use the sequences of the ids it
inserts. Its temporary table (save_orders' COPY staging) needs only the TEMPORARY privilege every
role has on a database by default. Tables and sequences that later migrations add get the same
through default privileges, before this runs again at the end of the upgrade.
"""

from sqlalchemy import Connection, MetaData, text
from sqlalchemy.sql.elements import quoted_name

# The service's rights, in one place: tests/test_postgres_security.py checks the role has no more.
TABLE_PRIVILEGES = ("SELECT", "INSERT")
SEQUENCE_PRIVILEGES = ("USAGE",)


class MissingRole(Exception):
    """DATABASE_URL names a role that does not exist on the server."""


def _quoted(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(quoted_name(name, quote=True))


def grant_service_role(connection: Connection, role: str, metadata: MetaData, schema: str = "public") -> None:
    """Grant `role` the service's rights on `metadata`'s tables and their sequences, and the same by
    default on what the connected role (the owner) creates later in `schema`."""
    exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).first()
    if exists is None:
        raise MissingRole(f"DATABASE_URL's role {role} does not exist: create it (CREATE ROLE {role} LOGIN "
                          "PASSWORD …), or let MIGRATION_DATABASE_URL be DATABASE_URL to use one role")
    grantee, where = _quoted(connection, role), _quoted(connection, schema)
    # The model's tables that exist at this revision (none after a downgrade to base), and their
    # sequences, each as regclass text: quoted and qualified as needed.
    names = [table.name for table in metadata.sorted_tables]
    tables = connection.execute(text(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname = :schema AND c.relname = ANY(:names)"),
        {"schema": schema, "names": names}).scalars().all()
    sequences = connection.execute(text(
        "SELECT s.oid::regclass::text FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
        "JOIN pg_class t ON d.refobjid = t.oid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE s.relkind = 'S' AND n.nspname = :schema AND t.relname = ANY(:names)"),
        {"schema": schema, "names": names}).scalars().all()
    table_rights, sequence_rights = ", ".join(TABLE_PRIVILEGES), ", ".join(SEQUENCE_PRIVILEGES)
    connection.execute(text(f"GRANT USAGE ON SCHEMA {where} TO {grantee}"))
    if tables:
        connection.execute(text(f"GRANT {table_rights} ON TABLE {', '.join(tables)} TO {grantee}"))
    if sequences:
        connection.execute(text(f"GRANT {sequence_rights} ON SEQUENCE {', '.join(sequences)} TO {grantee}"))
    for rights, kind in ((table_rights, "TABLES"), (sequence_rights, "SEQUENCES")):
        connection.execute(text(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {where} "
                                f"GRANT {rights} ON {kind} TO {grantee}"))
