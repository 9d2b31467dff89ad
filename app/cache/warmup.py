"""Warming a worker's cache with the most recent orders, on a thread of its own so that the
worker answers its first request at once."""

import logging
import threading
import time

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from app.cache import order_cache_for
from app.data.errors import first_line
from app.data.store import latest_bodies

log = logging.getLogger(__name__)


def warm_cache(app: Flask) -> int:
    """Load up to CACHE_WARMUP recent orders into this process's cache; the number loaded."""
    order_cache = order_cache_for(app)
    size = min(app.config["CACHE_WARMUP"], app.config["CACHE_THRESHOLD"])
    if size <= 0 or not order_cache.enabled:
        return 0
    started = time.perf_counter()
    try:
        with app.app_context():
            bodies = latest_bodies(size)
    except SQLAlchemyError as exc:
        # Not fatal: reads fall through to PostgreSQL (and fill the cache) once it is back.
        log.warning("cache warm-up skipped, PostgreSQL unavailable: %s", first_line(exc))
        return 0
    for order_uid, body in bodies:
        order_cache.put_body(order_uid, body)
    log.info("cache warmed with %d orders in %.2f s", len(bodies), time.perf_counter() - started)
    return len(bodies)


def start_cache_warmup(app: Flask) -> threading.Thread:
    thread = threading.Thread(target=warm_cache, args=(app,), name="cache-warmup", daemon=True)
    # /readyz says whether it has finished.
    app.extensions["cache_warmup"] = thread
    thread.start()
    return thread
