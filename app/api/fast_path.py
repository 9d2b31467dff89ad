"""Cache hits of GET /order/<order_uid>, answered before Flask.

A hit needs no database, routing or template: only the cached bytes and their headers. Flask's
request machinery cost many times that and held the cached rate far below a bare WSGI app
returning the same bytes (figures in bench/README.md). Everything else (misses, malformed ids, HEAD,
conditional requests, every other route) goes to Flask unchanged, and tests/test_api.py checks that
both paths answer a hit with the same status, headers and body.
"""

import time
from collections.abc import Callable, Iterable
from typing import Any

from app.api.lookup import is_valid_order_uid
from app.api.routes import ORDER_ROUTE, hit_headers
from app.cache import CachedOrder, OrderCache
from app.metrics import CACHE_REQUESTS, HTTP_DURATION
from app.security import SECURITY_HEADERS

_PREFIX = "/order/"


class CachedOrderFastPath:
    """WSGI middleware in front of the Flask app."""

    def __init__(self, wsgi_app: Callable, cache: OrderCache) -> None:
        self.wsgi_app = wsgi_app
        self.cache = cache
        self._duration = HTTP_DURATION.labels(ORDER_ROUTE, "GET", "200")
        self._hits = CACHE_REQUESTS.labels("hit")

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        if (
            path.startswith(_PREFIX)
            and environ.get("REQUEST_METHOD") == "GET"
            and "HTTP_IF_NONE_MATCH" not in environ
            and is_valid_order_uid(order_uid := path[len(_PREFIX):])
        ):
            cached = self.cache.lookup(order_uid)
            if isinstance(cached, CachedOrder):
                self._hits.inc()
                start_response("200 OK", [*hit_headers(cached, "cache"), *SECURITY_HEADERS.items()])
                self._duration.observe(time.perf_counter() - started)
                return [cached.body]
        return self.wsgi_app(environ, start_response)
