import re

from flask import Response, request

from app.cache import CachedOrder, order_cache
from app.errors import json_error
from app.orders import bp
from app.orders.store import get_order
from app.validation.schema import ORDER_UID_PATTERN

_ORDER_UID = re.compile(ORDER_UID_PATTERN)
# Orders never change, so a client or proxy may keep one for a year without asking again.
IMMUTABLE = "public, max-age=31536000, immutable"


def find_order(order_uid: str) -> tuple[CachedOrder | None, str]:
    """The order ready to send (None if unknown), and where it came from: "cache" or "database"."""
    cached = order_cache.lookup(order_uid)
    if cached is False:
        return None, "cache"
    if cached is not None:
        return cached, "cache"
    document = get_order(order_uid)
    if document is None:
        order_cache.remember_missing(order_uid)
        return None, "database"
    return order_cache.put_document(document), "database"


@bp.get("/order/<path:order_uid>")
def order_json(order_uid: str):
    if not _ORDER_UID.fullmatch(order_uid):
        return json_error(
            400, "invalid_order_uid", "an order_uid is 1 to 64 characters of A-Z a-z 0-9 _ -"
        )
    order, source = find_order(order_uid)
    if order is None:
        response = json_error(404, "order_not_found", f"no order with order_uid {order_uid!r}")
    elif order.etag in request.if_none_match:
        response = Response(status=304)
    else:
        response = Response(order.body, mimetype="application/json")
    if order is not None:
        response.headers["ETag"] = order.etag
        response.headers["Cache-Control"] = IMMUTABLE
    response.headers["X-Order-Source"] = source
    return response
