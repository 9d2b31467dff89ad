"""The per-process read cache: each order ready to send (encoded JSON body and ETag), so that a
hit does no database work and no re-encoding. Orders are immutable, so a cached order is never
stale; unknown ids are remembered briefly so a flood of them doesn't become a flood of queries.

One OrderCache per app, created by `init_order_cache` in the factory and found with
`order_cache_for(app)`: two apps in one process (tests, a CLI next to a server) never share one.
"""

import enum
import hashlib
import heapq
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from cachelib import SimpleCache
from flask import Flask, current_app

from app.documents import ServedOrder, encode_document

EXTENSION = "order_cache"
# What the cache holds for an id it recently found missing (cachelib stores plain, picklable data).
_MISSING_MARKER = "missing"


class KnownMissing(enum.Enum):
    """`OrderCache.lookup`'s answer for an id recently found missing in PostgreSQL."""

    KNOWN_MISSING = "known missing"


KNOWN_MISSING = KnownMissing.KNOWN_MISSING


class CachedOrder(NamedTuple):
    body: bytes
    etag: str

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "CachedOrder":
        return cls.from_body(encode_document(document))

    @classmethod
    def from_body(cls, body: bytes) -> "CachedOrder":
        # Unquoted, as werkzeug's ETags and set_etag expect it.
        return cls(body, hashlib.blake2b(body, digest_size=12).hexdigest())


class _SizedEntries(dict):
    """SimpleCache's entries, {key: (expiry, serialized value)}, keeping the sum of the serialized
    sizes as cachelib adds and drops entries (it uses item assignment, pop and clear)."""

    def __init__(self) -> None:
        super().__init__()
        self.nbytes = 0

    def __setitem__(self, key: str, entry: tuple[float, bytes]) -> None:
        self.pop(key, None)
        super().__setitem__(key, entry)
        self.nbytes += len(entry[1])

    def __delitem__(self, key: str) -> None:
        self.pop(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key not in self:
            return super().pop(key, *default)
        entry = super().pop(key)
        self.nbytes -= len(entry[1])
        return entry

    def clear(self) -> None:
        super().clear()
        self.nbytes = 0

    def _untracked(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("_SizedEntries tracks item assignment, pop and clear only")

    popitem = setdefault = update = _untracked


class _BulkEvictingCache(SimpleCache):
    """SimpleCache whose eviction works in bulk, bounded by entry count and by bytes.

    cachelib's own `_prune`, once the cache is full, scans and sorts every entry on every `set` to
    drop a single one, which slowed ingest several-fold once the caches filled up (figures in
    bench/README.md). Here a full cache drops what has expired and then the tenth of its entries
    that expire first, so the cost is paid once per `threshold / 10` writes. Bytes are bounded the
    same way: a write that takes the serialized values past `max_bytes` drops what has expired, then
    what expires first down to 90% of it.

    cachelib has no public hook for eviction, so this overrides its private `_prune` (run before
    every write), calls `_remove_expired` and swaps `_cache` for a dict that counts bytes;
    tests/unit/test_cache.py pins all three against the cachelib in requirements.txt.
    """

    def __init__(self, threshold: int, max_bytes: int, default_timeout: int) -> None:
        super().__init__(threshold=threshold, default_timeout=default_timeout)
        self._cache: _SizedEntries = _SizedEntries()
        self.max_bytes = max_bytes

    @property
    def nbytes(self) -> int:
        """The serialized size of every value held."""
        return self._cache.nbytes

    def _prune(self) -> None:
        if len(self._cache) < self._threshold:
            return
        self._remove_expired(time.time())
        excess = len(self._cache) - int(self._threshold * 0.9)
        if excess > 0:
            oldest = heapq.nsmallest(excess, self._cache.items(), key=lambda item: item[1][0])
            for key, _ in oldest:
                self._cache.pop(key, None)

    def _fit_bytes(self) -> None:
        if self._cache.nbytes <= self.max_bytes:
            return
        self._remove_expired(time.time())
        target = int(self.max_bytes * 0.9)
        for key, _ in sorted(self._cache.items(), key=lambda item: item[1][0]):
            if self._cache.nbytes <= target:
                return
            self._cache.pop(key, None)

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        with self._lock:
            stored = bool(super().set(key, value, timeout))
            self._fit_bytes()
            return stored

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        with self._lock:
            added = super().add(key, value, timeout)
            self._fit_bytes()
            return added


class OrderCache:
    """cachelib's SimpleCache (thread-safe from 0.15) behind an order-shaped interface."""

    def __init__(self, threshold: int, max_bytes: int, ttl: int, miss_ttl: int) -> None:
        self.enabled = threshold > 0 and max_bytes > 0
        self._cache = _BulkEvictingCache(max(threshold, 1), max(max_bytes, 1), default_timeout=ttl)
        # One order may not take more than a tenth of the budget, so that it never flushes the cache.
        self._max_order_bytes = max_bytes // 10
        self._miss_ttl = miss_ttl

    def lookup(self, order_uid: str) -> CachedOrder | KnownMissing | None:
        """The cached order; KNOWN_MISSING if it was recently found missing; None if not known here."""
        if not self.enabled:
            return None
        value = self._cache.get(order_uid)
        if value == _MISSING_MARKER:
            return KNOWN_MISSING
        return CachedOrder(*value) if value is not None else None

    def put_document(self, document: dict[str, Any]) -> CachedOrder:
        """The order ready to send, kept unless it is larger than a tenth of the byte budget."""
        return self._put(document["order_uid"], CachedOrder.from_document(document))

    def put_body(self, order_uid: str, body: bytes) -> CachedOrder:
        """Served bytes as PostgreSQL stored them (a read-through, the warm-up), kept as put_document
        keeps them. Replaces any remembered miss."""
        return self._put(order_uid, CachedOrder.from_body(body))

    def _put(self, order_uid: str, cached: CachedOrder) -> CachedOrder:
        if self.enabled and len(cached.body) <= self._max_order_bytes:
            self._cache.set(order_uid, tuple(cached))
        return cached

    def put_served(self, orders: Iterable[ServedOrder]) -> None:
        """Write-through from the consumer: the bytes it built once for storage, served as they are.
        Replaces any remembered miss, so an order that arrives is served at once."""
        for served in orders:
            self._put(served.order_uid, CachedOrder.from_body(served.body))

    def remember_missing(self, order_uid: str) -> None:
        """Remember that PostgreSQL had no such order, unless the order is cached by now: a
        lookup that read PostgreSQL just before the consumer stored and cached the order must
        not replace it (cachelib's `add` checks and writes under the cache's lock)."""
        if self.enabled and self._miss_ttl > 0:
            self._cache.add(order_uid, _MISSING_MARKER, timeout=self._miss_ttl)

    def clear(self) -> None:
        self._cache.clear()


def init_order_cache(app: Flask) -> OrderCache:
    """A fresh cache for `app`, kept in app.extensions."""
    config = app.config
    cache = OrderCache(config["CACHE_THRESHOLD"], config["CACHE_MAX_BYTES"], config["CACHE_TTL"],
                       config["CACHE_MISS_TTL"])
    app.extensions[EXTENSION] = cache
    return cache


def order_cache_for(app: Flask | None = None) -> OrderCache:
    """The cache of `app`, or of the current app."""
    return (app or current_app).extensions[EXTENSION]
