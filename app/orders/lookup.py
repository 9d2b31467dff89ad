"""Finding an order for a reader: the cache first, PostgreSQL on a miss (which fills the cache)."""

import re

from app.cache import KNOWN_MISSING, CachedOrder, order_cache_for
from app.metrics import CACHE_REQUESTS
from app.orders.store import get_order
from app.validation.schema import ORDER_UID_PATTERN

_ORDER_UID = re.compile(ORDER_UID_PATTERN)
ORDER_UID_RULE = "an order_uid is 1 to 64 characters of A-Z a-z 0-9 _ -"


def is_valid_order_uid(order_uid: str) -> bool:
    return _ORDER_UID.fullmatch(order_uid) is not None


def find_order(order_uid: str) -> tuple[CachedOrder | None, str]:
    """The order ready to send (None if unknown), and where the answer came from:
    "cache" or "database". A recently missed id is answered from the cache as unknown."""
    cache = order_cache_for()
    cached = cache.lookup(order_uid)
    CACHE_REQUESTS.labels("miss" if cached is None else "hit").inc()
    if cached is KNOWN_MISSING:
        return None, "cache"
    if cached is not None:
        return cached, "cache"
    document = get_order(order_uid)
    if document is None:
        cache.remember_missing(order_uid)
        return None, "database"
    return cache.put_document(document), "database"
