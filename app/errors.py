"""One set of error handlers: the JSON API answers `{"error": ..., "message": ...}`, the web page
answers an HTML page with the same status. No stack trace or driver message ever reaches a client."""

import logging

from flask import Flask, Response, abort, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.api.errors import json_error
from app.data.errors import note_database_outage
from app.web.routes import render_message

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5


def _answer(status: int, error: str, message: str, heading: str, page_message: str) -> Response:
    """JSON for the API (and any unmatched URL), an HTML page for the web page's routes."""
    if request.blueprint == "web":
        return render_message(status, heading, page_message)
    return json_error(status, error, message)


def register_error_handlers(app: Flask) -> None:
    @app.before_request
    def refuse_an_undecodable_query() -> None:
        # werkzeug decodes the raw query as strict UTF-8 when request.args is first read: a
        # byte like 0x80 would raise there, inside a view, as a 500. A 400 instead.
        try:
            request.args  # noqa: B018
        except UnicodeDecodeError:
            abort(400, "The query string is not valid UTF-8.")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        name = (exc.name or "error").lower().replace(" ", "_")
        description = exc.description or exc.name
        response = _answer(exc.code or 500, name, description, exc.name, description)
        for header, value in exc.get_headers():
            if header.lower() != "content-type":
                response.headers[header] = value
        return response

    @app.errorhandler(OperationalError)
    def database_unavailable(exc: OperationalError) -> Response:
        note_database_outage(exc)
        response = _answer(
            503, "database_unavailable", "PostgreSQL is unavailable right now; retry in a few seconds",
            "Orders are unavailable right now",
            "The order database cannot be reached. Please try again in a few seconds.",
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        log.exception("unhandled error")
        return _answer(500, "internal_error", InternalServerError.description, "Something went wrong",
                       "The order could not be shown just now. Please try again in a moment.")
