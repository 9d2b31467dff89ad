"""OpenTelemetry tracing, configured by the standard OTEL_* variables and off unless an OTLP endpoint
is set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).

Off, nothing is installed: no provider, no exporter thread, no middleware, no database hook; the
consumer's spans go to the API's no-op tracer. On:
- `init_tracing(app)` (the factory) puts OpenTelemetry's WSGI middleware in front of the cache-hit
  fast path, so every request gets a server span (with its X-Request-ID), names Flask's spans by
  route, and traces every PostgreSQL statement of the app's two engines (psycopg2's instrumentation on
  each new connection, which also sees the statements save_orders runs on the raw cursor, where
  SQLAlchemy's own events do not; its COPYs are not statements it traces);
- `start_tracing()` creates the provider and its BatchSpanProcessor thread: gunicorn's
  post_worker_init calls it in each worker, after the fork (a thread does not cross a fork), and
  `flush_tracing()` in worker_exit sends what is left.
Sampler, batch delays, service name and resource come from the SDK's own OTEL_* variables.
"""

import logging
import os
import threading
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)

SERVICE_NAME = "order-service"
# What a worker waits, at exit, for its last spans to reach the collector.
FLUSH_TIMEOUT_MS = 5000

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_provider_lock = threading.Lock()
_provider: Any = None
_provider_pid: int | None = None


def tracing_enabled() -> bool:
    """True when an OTLP endpoint is set (and the SDK is not disabled by OTEL_SDK_DISABLED)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def init_tracing(app: Flask) -> None:
    """Instrument `app` when tracing is on; call it after the fast path wraps app.wsgi_app and
    before the request-id layer does, so that the server span sees the request's id."""
    if not tracing_enabled():
        return
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    app.wsgi_app = OpenTelemetryMiddleware(app.wsgi_app, request_hook=_tag_request_id)
    app.before_request(_name_span_by_route)
    _trace_database(app)


def _tag_request_id(span: Any, environ: dict[str, Any]) -> None:
    # RequestIdMiddleware, outside this layer, has put the request's id (the edge's or a new one) here.
    request_id = environ.get("HTTP_X_REQUEST_ID")
    if request_id and span.is_recording():
        # The semantic conventions' name for a captured request header.
        span.set_attribute("http.request.header.x-request-id", [request_id])


def _name_span_by_route() -> None:
    """`GET /order/<order_uid>` instead of the path, so that spans group by route."""
    from flask import request
    from opentelemetry import trace

    span = trace.get_current_span()
    if request.url_rule is not None and span.is_recording():
        span.update_name(f"{request.method} {request.url_rule.rule}")
        span.set_attribute("http.route", request.url_rule.rule)


def _trace_database(app: Flask) -> None:
    from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor
    from sqlalchemy import event

    from app.extensions import db

    def _instrument(dbapi_connection, _record) -> None:
        Psycopg2Instrumentor.instrument_connection(dbapi_connection)

    with app.app_context():
        engines = list(db.engines.values())  # the default one and the reads one (config.READS_BIND)
    for engine in engines:
        event.listen(engine, "connect", _instrument)


def start_tracing() -> bool:
    """Create this process's tracer provider and exporter thread (once); True if tracing is on.
    Call it after a fork, in the process that makes the spans."""
    global _provider, _provider_pid
    if not tracing_enabled():
        return False
    with _provider_lock:
        if _provider is not None and _provider_pid == os.getpid():
            return True
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) wins over the default name.
        named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
            "OTEL_RESOURCE_ATTRIBUTES", "")
        provider = TracerProvider(resource=Resource.create({} if named else {"service.name": SERVICE_NAME}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _provider, _provider_pid = provider, os.getpid()
    log.info("tracing on: spans exported over OTLP/HTTP")
    return True


def flush_tracing(timeout_ms: int = FLUSH_TIMEOUT_MS) -> None:
    """Send the spans still queued and stop the exporter thread (a worker's exit)."""
    with _provider_lock:
        if _provider is not None and _provider_pid == os.getpid():
            _provider.force_flush(timeout_ms)
            _provider.shutdown()

