"""Every error is JSON in the contract's shape, {"error": ..., "message": ...}; no stack trace ever
reaches a client."""

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.extensions import db

log = logging.getLogger(__name__)


def json_error(status: int, error: str, message: str):
    response = jsonify(error=error, message=message)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
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
        log.warning("PostgreSQL unavailable: %s", str(exc.orig or exc).splitlines()[0])
        db.session.rollback()
        response = json_error(503, "database_unavailable",
                              "PostgreSQL is unavailable right now; retry in a few seconds")
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        log.exception("unhandled error")
        return json_error(500, "internal_error", InternalServerError.description)
