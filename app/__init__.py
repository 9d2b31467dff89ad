"""order-service: orders from Kafka, stored in PostgreSQL, served over HTTP."""

import logging
from typing import Any

from flask import Flask

from app.kafka_clients import KafkaSettings
from app.logs import configure_logging
from config import READS_BIND, Config, check_settings, engine_options, read_engine_options


def create_app(config_class: type = Config, overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app. Nothing here talks to PostgreSQL or Kafka; the consumer is started by
    gunicorn's post_fork hook (or explicitly), never by the factory."""
    app = Flask(__name__)
    app.config.from_object(config_class)
    app.config.update(overrides or {})
    check_settings(app.config)
    # A Kafka setting that can't work stops the start here, not the consumer thread later.
    KafkaSettings.from_config(app.config)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config))
    app.config.setdefault("SQLALCHEMY_BINDS", {READS_BIND: read_engine_options(app.config)})
    configure_logging(app)

    from app.cache import init_order_cache
    from app.data.store import init_held_connections
    from app.extensions import db, migrate

    db.init_app(app)
    init_held_connections(app)
    migrate.init_app(app, db, directory=_migrations_dir())
    order_cache = init_order_cache(app)

    from app.api import bp as api_bp
    from app.auth import init_auth
    from app.errors import register_error_handlers
    from app.health import bp as health_bp
    from app.metrics import init_metrics
    from app.openapi import init_openapi
    from app.security import init_security_headers
    from app.web import bp as web_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(web_bp)
    init_auth(app)
    register_error_handlers(app)
    init_security_headers(app)
    init_metrics(app)
    init_openapi(app)

    from app.api.fast_path import CachedOrderFastPath
    from app.auth import with_access_check
    from app.tracing import init_tracing

    app.wsgi_app = CachedOrderFastPath(app.wsgi_app, order_cache, app)
    # Outside the fast path: no answer with an order skips the access check.
    app.wsgi_app = with_access_check(app, app.wsgi_app)
    # Outside the fast path (a cache hit gets its server span too), inside the request id's layer.
    init_tracing(app)
    app.wsgi_app = _behind_the_edge(app, app.wsgi_app)

    from app.cli import register_commands

    register_commands(app)
    return app


def _behind_the_edge(app: Flask, wsgi_app):
    """Outermost layers: the request id (the edge's, or a new one) and its access-log line, and
    the client's address and scheme from X-Forwarded-* of TRUSTED_PROXIES proxies (werkzeug's
    ProxyFix), so that remote_addr is the client's, not the edge's."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    from app.logs import AccessLog, RequestIdMiddleware, access_log

    logged = app.config["ACCESS_LOG"] and access_log.isEnabledFor(logging.INFO)
    lines = AccessLog(app.config["ACCESS_LOG_FLUSH_MS"], app.config["LOG_FORMAT"] == "json") \
        if logged else None
    wsgi_app = RequestIdMiddleware(wsgi_app, app.config["REQUEST_ID_PATTERN"], lines)
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies > 0:
        wsgi_app = ProxyFix(wsgi_app, x_for=proxies, x_proto=proxies)
    return wsgi_app


def _migrations_dir() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parent.parent / "migrations")
