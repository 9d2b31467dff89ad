import re

from flask import Response, jsonify, request

from app.api import bp
from app.api.errors import json_error
from app.api.lookup import ORDER_UID_RULE, find_order, is_valid_order_uid
from app.api.pages import recent_page
from app.cache import CachedOrder

ORDER_ROUTE = "/order/<path:order_uid>"
# An order in full carries personal data: no cache, shared or private, may keep it. (The edge's
# cache keeps it under its own rules; app/auth/layer.py serves the masked form as `private`.)
FULL_ORDER_CACHE_CONTROL = "no-store"


def hit_headers(order: CachedOrder, source: str) -> list[tuple[str, str]]:
    """The headers of a 200 answer with an order, whichever path serves it (security headers are
    added by the app's after_request hook, or by the fast path)."""
    return [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(order.body))),
        ("ETag", f'"{order.etag}"'),
        ("Cache-Control", FULL_ORDER_CACHE_CONTROL),
        ("X-Order-Source", source),
    ]


@bp.get(ORDER_ROUTE)
def order_json(order_uid: str):
    """The order: cache hits usually never get here (see fast_path), everything else does."""
    if not is_valid_order_uid(order_uid):
        return json_error(400, "invalid_order_uid", ORDER_UID_RULE)
    found = find_order(order_uid)
    order, source = found.order, found.source
    if order is None:
        response = json_error(404, "order_not_found", f"no order with order_uid {order_uid!r}")
    elif order.etag in request.if_none_match:
        response = Response(status=304)
        response.set_etag(order.etag)
        response.headers["Cache-Control"] = FULL_ORDER_CACHE_CONTROL
    else:
        return Response(order.body, headers=hit_headers(order, source))
    response.headers["X-Order-Source"] = source
    return response


DEFAULT_PAGE = 20
MAX_PAGE = 100
# ASCII digits only, and no more of them than MAX_PAGE has: str.isdigit() also accepts ² or ①,
# which int() refuses, and int() reads ５ or ٥ and refuses numbers of over 4,300 digits.
_LIMIT = re.compile(f"[0-9]{{1,{len(str(MAX_PAGE))}}}")


def parse_limit(raw: str) -> int | None:
    """The page size a client asked for, or None unless it is a plain number from 1 to MAX_PAGE."""
    if _LIMIT.fullmatch(raw) is None or not 1 <= int(raw) <= MAX_PAGE:
        return None
    return int(raw)


@bp.get("/orders")
def recent_orders_json():
    """The most recent orders, newest first, as summaries; `before` is the previous page's cursor."""
    limit = parse_limit(request.args.get("limit", str(DEFAULT_PAGE)))
    if limit is None:
        return json_error(400, "invalid_limit", f"limit must be a whole number from 1 to {MAX_PAGE}")
    try:
        page = recent_page(limit, request.args.get("before"))
    except ValueError:
        return json_error(400, "invalid_cursor", "before must be a next_cursor from an earlier page")
    response = jsonify(orders=page.orders, next_cursor=page.next_cursor)
    # What a caller may list depends on its token: no shared cache keeps it, and a browser's own
    # cache keys it by the Authorization header too.
    response.headers["Cache-Control"] = "private, no-cache"
    response.headers["Vary"] = "Authorization"
    return response
