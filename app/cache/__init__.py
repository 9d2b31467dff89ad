"""The per-process read cache: each order ready to send (encoded JSON body and ETag), so that a
hit does no database work and no re-encoding. Orders are immutable, so a cached order is never
stale; unknown ids are remembered briefly so a flood of them doesn't become a flood of queries."""

import hashlib
import heapq
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from cachelib import SimpleCache
from flask import Flask

from app.documents import encode_document

_MISSING = "missing"


class CachedOrder(NamedTuple):
    body: bytes
    etag: str

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "CachedOrder":
        body = encode_document(document)
        # Unquoted, as werkzeug's ETags and set_etag expect it.
        return cls(body, hashlib.blake2b(body, digest_size=12).hexdigest())


class _BulkEvictingCache(SimpleCache):
    """SimpleCache whose eviction works in bulk.

    cachelib's own `_prune`, once the cache is full, scans and sorts every entry on every `set` to
    drop a single one, which slowed ingest several-fold once the caches filled up (figures in
    bench/README.md). Here a full cache drops what
    has expired and then the tenth of its entries that expire first, so the cost is paid once per
    `threshold / 10` writes.
    """

    def _prune(self) -> None:
        if len(self._cache) < self._threshold:
            return
        self._remove_expired(time.time())
        excess = len(self._cache) - int(self._threshold * 0.9)
        if excess > 0:
            oldest = heapq.nsmallest(excess, self._cache.items(), key=lambda item: item[1][0])
            for key, _ in oldest:
                self._cache.pop(key, None)


class OrderCache:
    """cachelib's SimpleCache (thread-safe from 0.15) behind an order-shaped interface."""

    def __init__(self) -> None:
        self._cache: SimpleCache = _BulkEvictingCache(threshold=0)
        self._miss_ttl = 1
        self.enabled = False

    def init_app(self, app: Flask) -> None:
        self.enabled = app.config["CACHE_THRESHOLD"] > 0
        self._cache = _BulkEvictingCache(
            threshold=max(app.config["CACHE_THRESHOLD"], 1),
            default_timeout=app.config["CACHE_TTL"],
        )
        self._miss_ttl = app.config["CACHE_MISS_TTL"]
        app.extensions["order_cache"] = self

    def lookup(self, order_uid: str) -> CachedOrder | bool | None:
        """The cached order; False if it was recently found missing; None if not known here."""
        if not self.enabled:
            return None
        value = self._cache.get(order_uid)
        if value == _MISSING:
            return False
        return CachedOrder(*value) if value is not None else None

    def put_document(self, document: dict[str, Any]) -> CachedOrder:
        cached = CachedOrder.from_document(document)
        if self.enabled:
            self._cache.set(document["order_uid"], tuple(cached))
        return cached

    def put_documents(self, documents: Iterable[dict[str, Any]]) -> None:
        """Write-through from the consumer, in get_order's served form. Replaces any remembered
        miss, so an order that arrives is served at once."""
        for document in documents:
            self.put_document(document)

    def remember_missing(self, order_uid: str) -> None:
        if self.enabled and self._miss_ttl > 0:
            self._cache.set(order_uid, _MISSING, timeout=self._miss_ttl)

    def clear(self) -> None:
        self._cache.clear()


order_cache = OrderCache()
