"""Every error is JSON in the contract's shape, {"error": ..., "message": ...}; no stack trace ever
reaches a client."""

import logging

from flask import Flask, abort, jsonify, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.extensions import db

log = logging.getLogger(__name__)


RETRY_AFTER_S = 5


def first_line(exc: Exception) -> str:
    """The driver's own message for a database error (SQLAlchemy wraps it in `orig`), first line."""
    return (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]


def note_database_outage(exc: OperationalError) -> None:
    """What every answer to an unreachable PostgreSQL does first: say so once in the log and
    release the session, whose connection is gone."""
    log.warning("PostgreSQL unavailable: %s", first_line(exc))
    db.session.rollback()


def json_error(status: int, error: str, message: str):
    response = jsonify(error=error, message=message)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.before_request
    def refuse_an_undecodable_query() -> None:
        # werkzeug decodes the raw query as strict UTF-8 when request.args is first read: a
        # byte like 0x80 would raise there, inside a view, as a 500. A 400 instead (JSON for the
        # API, a page for the web routes, by their own HTTPException handlers).
        try:
            request.args  # noqa: B018
        except UnicodeDecodeError:
            abort(400, "The query string is not valid UTF-8.")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        name = (exc.name or "error").lower().replace(" ", "_")
        response = json_error(exc.code or 500, name, exc.description or exc.name)
        for header, value in exc.get_headers():
            if header.lower() != "content-type":
                response.headers[header] = value
        return response

    @app.errorhandler(OperationalError)
    def database_unavailable(exc: OperationalError):
        note_database_outage(exc)
        response = json_error(503, "database_unavailable",
                              "PostgreSQL is unavailable right now; retry in a few seconds")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        log.exception("unhandled error")
        return json_error(500, "internal_error", InternalServerError.description)
