"""Warming a worker's cache with the most recent orders, on a thread of its own so that the
worker answers its first request at once."""

import logging
import threading
import time

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from app.cache import order_cache_for
from app.data.errors import first_line, timed_out
from app.data.store import PageKey, latest_bodies

log = logging.getLogger(__name__)

# Orders read per statement. One statement for the whole warm-up grows with CACHE_WARMUP and, on a
# large table whose recent orders are not in memory, can outlast DB_STATEMENT_TIMEOUT_MS and lose
# the lot; a page of this size stays far inside it (bench/README.md, "the cache's warm-up").
PAGE = 1000
# How often a long warm-up says how far it has come.
PROGRESS_EVERY_S = 10.0


def warm_cache(app: Flask) -> int:
    """Load up to CACHE_WARMUP recent orders into this process's cache, a page at a time, newest
    first; the number loaded. A page PostgreSQL can't serve ends the warm-up with what it has:
    reads of the rest fall through to PostgreSQL (and fill the cache)."""
    order_cache = order_cache_for(app)
    size = min(app.config["CACHE_WARMUP"], app.config["CACHE_THRESHOLD"])
    if size <= 0 or not order_cache.enabled:
        return 0
    started = last_said = time.perf_counter()
    loaded = 0
    before: PageKey | None = None
    while loaded < size:
        try:
            with app.app_context():
                page = latest_bodies(min(PAGE, size - loaded), before)
        except SQLAlchemyError as exc:
            _stopped(exc, loaded, size)
            break
        for order_uid, body in page.bodies:
            order_cache.put_body(order_uid, body)
        loaded += len(page.bodies)
        if page.next_key is None:
            break
        before = page.next_key
        if time.perf_counter() - last_said >= PROGRESS_EVERY_S:
            last_said = time.perf_counter()
            log.info("cache warm-up: %d of %d orders in %.0f s", loaded, size, last_said - started)
    log.info("cache warmed with %d orders in %.2f s", loaded, time.perf_counter() - started)
    return loaded


def _stopped(exc: SQLAlchemyError, loaded: int, size: int) -> None:
    if timed_out(exc):
        log.warning("cache warm-up stopped at %d of %d orders: a page of %d took PostgreSQL longer than "
                    "DB_STATEMENT_TIMEOUT_MS; reads of the rest fill the cache as they come",
                    loaded, size, PAGE)
    else:
        log.warning("cache warm-up stopped at %d of %d orders, PostgreSQL unavailable: %s; reads fill the "
                    "cache once it is back", loaded, size, first_line(exc))


def start_cache_warmup(app: Flask) -> threading.Thread:
    thread = threading.Thread(target=warm_cache, args=(app,), name="cache-warmup", daemon=True)
    # /readyz says whether it has finished.
    app.extensions["cache_warmup"] = thread
    thread.start()
    return thread
