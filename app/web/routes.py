"""`GET /`: recent orders and a search box; `GET /?id=<order_uid>`: one order, read through the same
cache as the JSON API. Unknown and malformed ids get HTML pages with real 404 and 400 statuses."""

from collections import Counter
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from flask import Response, make_response, render_template, request

from app.api.lookup import ORDER_UID_RULE, find_order, is_valid_order_uid
from app.api.pages import recent_page
from app.auth.audit import audit_order_read
from app.auth.masking import mask_document
from app.auth.policy import LIST, PII, READ
from app.auth.tokens import Principal
from app.auth.web import page_access
from app.web import bp

PAGE_SIZE = 20


@bp.get("/")
def index():
    wanted = request.args.get("id", "").strip()
    access = page_access(READ if wanted else LIST)
    if isinstance(access, Response):
        return access
    if wanted:
        return _order_page(wanted, access)
    return _recent_page(request.args.get("before") or None)


def _recent_page(before: str | None) -> Response:
    try:
        page = recent_page(PAGE_SIZE, before)
    except ValueError:
        return _render(
            "message.html", HTTPStatus.BAD_REQUEST,
            heading="This page link is broken",
            message="The link to older orders is not one this page made. Start again from the newest.",
        )
    return _render("index.html", orders=page.orders, next_cursor=page.next_cursor,
                   is_first_page=before is None, autofocus=True)


def _order_page(order_uid: str, principal: Principal | None) -> Response:
    """The order, its personal fields masked unless the person may see them (`principal` is None
    when authentication is off)."""
    if not is_valid_order_uid(order_uid):
        return _render(
            "message.html", HTTPStatus.BAD_REQUEST, query=order_uid, invalid=True,
            heading="That is not an order id",
            message=f"Please check it: {ORDER_UID_RULE}.",
        )
    found = find_order(order_uid)
    if found.order is None:
        response = _render(
            "message.html", HTTPStatus.NOT_FOUND, query=order_uid,
            heading="Order not found",
            message="There is no order with this id. Check it, or pick one of the recent orders.",
        )
    else:
        masked = principal is not None and not principal.may(PII)
        order = mask_document(found.document()) if masked else found.document()
        audit_order_read(principal, order_uid, masked, request.environ.get("HTTP_X_REQUEST_ID", "-"), "page")
        response = _render(
            "order.html", query=order_uid, order=order, masked=masked,
            statuses=Counter(item["status"] for item in order["items"]).most_common(),
            items_total=sum(item["total_price"] for item in order["items"]),
        )
    response.headers["X-Order-Source"] = found.source
    return response


def _render(template: str, status: int = HTTPStatus.OK, **context: Any) -> Response:
    context.setdefault("query", "")
    context.setdefault("autofocus", False)
    response = make_response(render_template(template, **context), status)
    # A page may show an order's personal data: never kept by any cache.
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Cookie")
    return response


def render_message(status: int, heading: str, message: str) -> Response:
    """A page that says what went wrong (app/errors.py uses it for the web page's errors)."""
    return _render("message.html", status, heading=heading, message=message)


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
