"""Prometheus metrics. Under gunicorn every worker writes its values to PROMETHEUS_MULTIPROC_DIR
(set up by gunicorn.conf.py) and /metrics adds them up, so any worker answers for all of them."""

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

ORDERS_CONSUMED = Counter(
    "orders_consumed_total", "Records consumed from Kafka, by what became of them", ["result"]
)
CACHE_REQUESTS = Counter("orders_cache_requests_total", "Order look-ups by cache result", ["result"])
# Fetches of the provider's signing keys (JWKS) by outcome: an unknown kid may not hammer it.
KEY_FETCHES = Counter("auth_key_fetches_total", "Fetches of the OpenID Connect provider's keys", ["outcome"])
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration by route, method and status",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
BATCH_SIZE = Histogram(
    "ingest_batch_size", "Records per consumed batch", buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000)
)
BATCH_DURATION = Histogram(
    "ingest_batch_duration_seconds",
    "Time to validate, store, dead-letter and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "orders_consumer_lag",
    "Records in the partition not yet processed by this service",
    ["partition"],
    multiprocess_mode="livesum",
)
CONSUMER_WAITING = Gauge(
    "orders_consumer_waiting",
    "1 while a consumer waits out an outage of PostgreSQL, Kafka or the dead-letter topic",
    multiprocess_mode="livesum",
)
CONSUMER_PARTITIONS = Gauge(
    "orders_consumer_partitions",
    "Partitions this instance's consumers own now (0 while they join or rebalance)",
    multiprocess_mode="livesum",
)
CONSUMER_BREAKER_OPEN = Gauge(
    "orders_consumer_breaker_open",
    "1 while PostgreSQL refuses orders that passed validation, by the constraint it names "
    "(or SQLSTATE): the consumer waits instead of dead-lettering them",
    ["constraint"],
    multiprocess_mode="livesum",
)
CONSUMER_RESTARTS = Counter(
    "orders_consumer_restarts_total",
    "Consumer restarts after an unexpected error (each one rebalances the group)",
)


def init_metrics(app: Flask) -> None:
    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        started = g.pop("request_started", None)
        if started is not None:
            # Both labels come from a fixed set, so no client can create series at will: the
            # route is the matched rule's pattern, and gunicorn accepts any token as a method.
            route = request.url_rule.rule if request.url_rule else "unmatched"
            method = request.method if request.method in KNOWN_METHODS else "other"
            HTTP_DURATION.labels(route, method, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(_registry()), mimetype=CONTENT_TYPE_LATEST)


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry
