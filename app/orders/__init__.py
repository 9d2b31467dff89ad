"""Orders: tables, storage and the HTTP blueprint."""

from flask import Blueprint

bp = Blueprint("orders", __name__)

from app.orders import models, routes  # noqa: E402,F401
