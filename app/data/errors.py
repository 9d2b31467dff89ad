"""What every part that talks to PostgreSQL says about its errors: the consumer, the warm-up, the
health checks and the HTTP error handlers."""

import logging

from sqlalchemy.exc import OperationalError

from app.extensions import db

log = logging.getLogger(__name__)

# PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout (DB_STATEMENT_TIMEOUT_MS).
QUERY_CANCELED = "57014"


def first_line(exc: Exception) -> str:
    """The driver's own message for a database error (SQLAlchemy wraps it in `orig`), first line."""
    return (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]


def note_database_outage(exc: OperationalError) -> None:
    """What every answer to an unreachable PostgreSQL does first: say so once in the log and
    release the session, whose connection is gone."""
    log.warning("PostgreSQL unavailable: %s", first_line(exc))
    db.session.rollback()


def timed_out(exc: Exception) -> bool:
    """Whether PostgreSQL cancelled the statement for taking longer than DB_STATEMENT_TIMEOUT_MS."""
    return getattr(getattr(exc, "orig", None), "pgcode", None) == QUERY_CANCELED
