"""The JSON API: GET /order/<order_uid> (with its cache-hit fast path in front of Flask) and
GET /orders, on top of the data layer and the cache."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from app.api import routes  # noqa: E402,F401
