import re

from flask import Response, jsonify, request

from app.errors import json_error
from app.orders import bp
from app.orders.fast_path import IMMUTABLE, ORDER_ROUTE, hit_headers
from app.orders.lookup import ORDER_UID_RULE, find_order, is_valid_order_uid
from app.orders.store import recent_orders


@bp.get(ORDER_ROUTE)
def order_json(order_uid: str):
    """The order: cache hits usually never get here (see fast_path), everything else does."""
    if not is_valid_order_uid(order_uid):
        return json_error(400, "invalid_order_uid", ORDER_UID_RULE)
    order, source = find_order(order_uid)
    if order is None:
        response = json_error(404, "order_not_found", f"no order with order_uid {order_uid!r}")
    elif order.etag in request.if_none_match:
        response = Response(status=304)
        response.set_etag(order.etag)
        response.headers["Cache-Control"] = IMMUTABLE
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
        page = recent_orders(limit, request.args.get("before"))
    except ValueError:
        return json_error(400, "invalid_cursor", "before must be a next_cursor from an earlier page")
    response = jsonify(orders=page.orders, next_cursor=page.next_cursor)
    response.headers["Cache-Control"] = "no-cache"
    return response
