"""`GET /`: recent orders and a search box; `GET /?id=<order_uid>`: one order, read through the same
cache as the JSON API. Unknown and malformed ids get HTML pages with real 404 and 400 statuses."""

import json
import logging
from collections import Counter
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from flask import Response, make_response, render_template, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from app.errors import RETRY_AFTER_S, note_database_outage
from app.orders.lookup import ORDER_UID_RULE, find_order, is_valid_order_uid
from app.orders.store import recent_orders
from app.web import bp

log = logging.getLogger(__name__)

PAGE_SIZE = 20


@bp.get("/")
def index():
    wanted = request.args.get("id", "").strip()
    if wanted:
        return _order_page(wanted)
    return _recent_page(request.args.get("before") or None)


def _recent_page(before: str | None) -> Response:
    try:
        page = recent_orders(PAGE_SIZE, before)
    except ValueError:
        return _render(
            "message.html", HTTPStatus.BAD_REQUEST,
            heading="This page link is broken",
            message="The link to older orders is not one this page made. Start again from the newest.",
        )
    return _render("index.html", orders=page.orders, next_cursor=page.next_cursor,
                   is_first_page=before is None, autofocus=True)


def _order_page(order_uid: str) -> Response:
    if not is_valid_order_uid(order_uid):
        return _render(
            "message.html", HTTPStatus.BAD_REQUEST, query=order_uid, invalid=True,
            heading="That is not an order id",
            message=f"Please check it: {ORDER_UID_RULE}.",
        )
    cached, source = find_order(order_uid)
    if cached is None:
        response = _render(
            "message.html", HTTPStatus.NOT_FOUND, query=order_uid,
            heading="Order not found",
            message="There is no order with this id. Check it, or pick one of the recent orders.",
        )
    else:
        order = json.loads(cached.body)
        response = _render(
            "order.html", query=order_uid, order=order,
            statuses=Counter(item["status"] for item in order["items"]).most_common(),
            items_total=sum(item["total_price"] for item in order["items"]),
        )
    response.headers["X-Order-Source"] = source
    return response


def _render(template: str, status: int = HTTPStatus.OK, **context: Any) -> Response:
    context.setdefault("query", "")
    context.setdefault("autofocus", False)
    response = make_response(render_template(template, **context), status)
    response.headers["Cache-Control"] = "no-cache"
    return response


# The web routes answer in HTML even when something fails (the app's handlers answer in JSON).
@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    return _render("message.html", exc.code or 500, heading=exc.name, message=exc.description or "")


@bp.errorhandler(OperationalError)
def database_unavailable(exc: OperationalError) -> Response:
    # The blueprint's Exception handler would otherwise win over the app's JSON 503.
    note_database_outage(exc)
    response = _render(
        "message.html", HTTPStatus.SERVICE_UNAVAILABLE,
        heading="Orders are unavailable right now",
        message="The order database cannot be reached. Please try again in a few seconds.",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


@bp.errorhandler(Exception)
def unexpected_error(exc: Exception) -> Response:
    log.exception("unhandled error on a web page")
    return _render(
        "message.html", HTTPStatus.INTERNAL_SERVER_ERROR,
        heading="Something went wrong",
        message="The order could not be shown just now. Please try again in a moment.",
    )


@bp.app_template_filter("money")
def money(amount: int, currency: str) -> str:
    """An amount as the contract gives it (an integer) with its ISO currency code: 1,817 USD."""
    return f"{amount:,} {currency}"


@bp.app_template_filter("unix_utc")
def unix_utc(seconds: int) -> str:
    """Unix seconds as a UTC date-time; the raw number when it is beyond what a date can hold."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (Unix seconds)"


@bp.app_template_filter("iso_utc")
def iso_utc(served: str, zone: bool = True) -> str:
    """A served date_created (YYYY-MM-DDTHH:MM:SS[.ffffff]Z) as a readable UTC date-time; without
    the " UTC" where a heading already says so."""
    try:
        moment = datetime.fromisoformat(served)
    except ValueError:
        return served
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC" if zone else "%Y-%m-%d %H:%M:%S")
