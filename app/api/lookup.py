"""Finding an order for a reader: the cache first, PostgreSQL on a miss (which fills the cache)."""

import json
import re
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, has_request_context, request

from app.cache import KNOWN_MISSING, CachedOrder, OrderCache, order_cache_for
from app.data.store import order_body
from app.metrics import CACHE_REQUESTS
from app.validation.schema import ORDER_UID_PATTERN

_ORDER_UID = re.compile(ORDER_UID_PATTERN)
ORDER_UID_RULE = "an order_uid is 1 to 64 characters of A-Z a-z 0-9 _ -"
# The WSGI environ key under which the fast path hands Flask a miss it could not answer itself (an
# unknown id, or the error PostgreSQL gave): the view answers from it without reading again.
EARLIER_MISS = "order_service.earlier_miss"


def is_valid_order_uid(order_uid: str) -> bool:
    return _ORDER_UID.fullmatch(order_uid) is not None


@dataclass(frozen=True, slots=True)
class Found:
    """A look-up's answer: the order ready to send (None if unknown), and where the answer came
    from ("cache" or "database")."""

    order: CachedOrder | None
    source: str

    def document(self) -> dict[str, Any]:
        """The order as a document (for a page), decoded from the bytes that are served."""
        assert self.order is not None, "an unknown order has no document"
        return json.loads(self.order.body)


def find_order(order_uid: str) -> Found:
    """The cache first, PostgreSQL on a miss (which fills the cache). A recently missed id is
    answered from the cache as unknown."""
    earlier = request.environ.pop(EARLIER_MISS, None) if has_request_context() else None
    if isinstance(earlier, Exception):
        raise earlier
    if earlier is not None:
        return earlier
    cache = order_cache_for()
    cached = cache.lookup(order_uid)
    CACHE_REQUESTS.labels("miss" if cached is None else "hit").inc()
    if cached is KNOWN_MISSING:
        return Found(None, "cache")
    if cached is not None:
        return Found(cached, "cache")
    return Found(read_through(cache, order_uid, current_app._get_current_object()), "database")


def read_through(cache: OrderCache, order_uid: str, app: Flask) -> CachedOrder | None:
    """A miss: the order's stored bytes from `app`'s PostgreSQL (one indexed read), put in the cache;
    an unknown id is remembered as missing. Needs no app context."""
    body = order_body(order_uid, app)
    if body is None:
        cache.remember_missing(order_uid)
        return None
    return cache.put_body(order_uid, body)
