"""GET /order/<order_uid> answered before Flask: cache hits, and misses of stored orders.

A hit needs no database, routing or template: only the cached bytes and their headers. Flask's
request machinery cost many times that and held the cached rate far below a bare WSGI app
returning the same bytes (figures in bench/README.md). A miss is one indexed read of the order's
stored bytes (lookup.read_through), which fills the cache; an unknown id or a database error is
handed to Flask with what the read found, so that Flask answers it without reading again.
Everything else (malformed ids, HEAD, conditional requests, every other route) goes to Flask
unchanged, and tests/test_api.py checks that both paths answer with the same status, headers and
body.
"""

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from app.api.lookup import EARLIER_MISS, Found, is_valid_order_uid, read_through
from app.api.routes import ORDER_ROUTE, hit_headers
from app.cache import CachedOrder, OrderCache
from app.metrics import CACHE_REQUESTS, HTTP_DURATION
from app.security import SECURITY_HEADERS

_PREFIX = "/order/"


class CachedOrderFastPath:
    """WSGI middleware in front of the Flask app."""

    def __init__(self, wsgi_app: Callable, cache: OrderCache, app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.cache = cache
        self.app = app
        self._duration = HTTP_DURATION.labels(ORDER_ROUTE, "GET", "200")
        self._hits = CACHE_REQUESTS.labels("hit")
        self._misses = CACHE_REQUESTS.labels("miss")

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        if (
            path.startswith(_PREFIX)
            and environ.get("REQUEST_METHOD") == "GET"
            and "HTTP_IF_NONE_MATCH" not in environ
            and is_valid_order_uid(order_uid := path[len(_PREFIX):])
        ):
            cached, source = self.cache.lookup(order_uid), "cache"
            if isinstance(cached, CachedOrder):
                self._hits.inc()
            elif cached is None:  # a miss (an id known to be missing is Flask's 404)
                self._misses.inc()
                cached, source = self._read_through(order_uid, environ), "database"
            if isinstance(cached, CachedOrder):
                start_response("200 OK", [*hit_headers(cached, source), *SECURITY_HEADERS.items()])
                self._duration.observe(time.perf_counter() - started)
                return [cached.body]
        return self.wsgi_app(environ, start_response)

    def _read_through(self, order_uid: str, environ: dict[str, Any]) -> CachedOrder | None:
        """The stored order, or None with what the read found left in `environ` for Flask."""
        try:
            found = read_through(self.cache, order_uid, self.app)
        except Exception as exc:  # Flask's error handlers answer it (503 for an outage), and log it
            environ[EARLIER_MISS] = exc
            return None
        if found is None:
            environ[EARLIER_MISS] = Found(None, "database")
        return found
