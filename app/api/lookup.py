"""Finding an order for a reader: the cache first, PostgreSQL on a miss (which fills the cache)."""

import json
import re
from dataclasses import dataclass
from typing import Any

from app.cache import KNOWN_MISSING, CachedOrder, order_cache_for
from app.data.store import get_order
from app.metrics import CACHE_REQUESTS
from app.validation.schema import ORDER_UID_PATTERN

_ORDER_UID = re.compile(ORDER_UID_PATTERN)
ORDER_UID_RULE = "an order_uid is 1 to 64 characters of A-Z a-z 0-9 _ -"


def is_valid_order_uid(order_uid: str) -> bool:
    return _ORDER_UID.fullmatch(order_uid) is not None


@dataclass(frozen=True, slots=True)
class Found:
    """A look-up's answer: the order ready to send (None if unknown), where the answer came from
    ("cache" or "database"), and the document when the database read gave one."""

    order: CachedOrder | None
    source: str
    _document: dict[str, Any] | None = None

    def document(self) -> dict[str, Any]:
        """The order as a document (for a page): read from PostgreSQL, or decoded from the cache."""
        assert self.order is not None, "an unknown order has no document"
        return self._document if self._document is not None else json.loads(self.order.body)


def find_order(order_uid: str) -> Found:
    """The cache first, PostgreSQL on a miss (which fills the cache). A recently missed id is
    answered from the cache as unknown."""
    cache = order_cache_for()
    cached = cache.lookup(order_uid)
    CACHE_REQUESTS.labels("miss" if cached is None else "hit").inc()
    if cached is KNOWN_MISSING:
        return Found(None, "cache")
    if cached is not None:
        return Found(cached, "cache")
    document = get_order(order_uid)
    if document is None:
        cache.remember_missing(order_uid)
        return Found(None, "database")
    return Found(cache.put_document(document), "database", document)
