"""Configuration classes. Every setting comes from the environment (or `.env`), with defaults that
match `make infra`, so a fresh clone runs without any configuration at all."""

import os
from collections.abc import Mapping
from typing import Any

from dotenv import load_dotenv

# `.env` fills in what the environment does not set; the environment always wins.
load_dotenv()


# Every variable the service, gunicorn.conf.py and `make infra` read, with its default: the one
# place a default is written. gunicorn.conf.py reads its settings from here; .env.example, README's
# table, docker-compose.yml and scripts/infra.sh are checked against it (tests/unit/test_defaults.py).
DEFAULTS: dict[str, str | int | bool] = {
    "DATABASE_URL": "postgresql+psycopg2://orders:orders@127.0.0.1:5432/orders",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "KAFKA_TOPIC": "orders",
    "KAFKA_DLQ_TOPIC": "orders-dlq",
    "KAFKA_GROUP_ID": "order-service",
    "KAFKA_TOPIC_PARTITIONS": 6,  # read by `make infra` only
    # How every Kafka client of the service authenticates (app/kafka_clients.py).
    "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "KAFKA_SASL_MECHANISM": "",
    "KAFKA_SASL_USERNAME": "",
    "KAFKA_SASL_PASSWORD": "",  # or KAFKA_SASL_PASSWORD_FILE
    "KAFKA_SSL_CAFILE": "",
    "KAFKA_SSL_CERTFILE": "",
    "KAFKA_SSL_KEYFILE": "",
    "HOST": "0.0.0.0",
    "PORT": 8080,
    "APP_BIND": "127.0.0.1:8081",
    "TRUSTED_PROXIES": 1,
    "EDGE_CLIENT_TIMEOUT_S": 10,
    "EDGE_MAX_HEADER_BYTES": 8192,
    "EDGE_WORKER_CONNECTIONS": 4096,
    "EDGE_CACHE_DIR": "",  # empty: `make infra` puts the edge cache on tmpfs (/dev/shm)
    "EDGE_CACHE_MAX_MB": 256,
    "EDGE_CACHE_KEYS_MB": 16,
    "METRICS_ALLOW": "127.0.0.1 ::1",
    "GUNICORN_KEEPALIVE_S": 5,
    "ACCESS_LOG": True,
    "WEB_CONCURRENCY": 2,
    "GUNICORN_WORKER_CLASS": "gthread",
    "GUNICORN_THREADS": 4,
    "GUNICORN_TIMEOUT": 30,
    "GUNICORN_GRACEFUL_TIMEOUT": 30,
    "GUNICORN_ACCESS_LOG": "",  # a file, or "-" for stdout; empty: no access log
    "CONSUMER_ENABLED": True,
    "CONSUMER_BATCH_SIZE": 500,
    "CONSUMER_BATCH_WAIT_MS": 200,
    "CONSUMER_MAX_BACKOFF_S": 10,
    "CACHE_THRESHOLD": 20_000,
    "CACHE_MAX_BYTES": 128 * 1024 * 1024,
    "CACHE_TTL": 3600,
    "CACHE_MISS_TTL": 2,
    "CACHE_WARMUP": 1000,
    "DB_POOL_SIZE": 5,
    "DB_STATEMENT_TIMEOUT_MS": 5000,
    "DB_LOCK_TIMEOUT_MS": 2000,
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "plain",
    "ORDER_SERVICE_HOME": "~/.cache/order-service",  # `make infra` only; honours $XDG_CACHE_HOME
}


def _raw(name: str) -> str | None:
    """The variable's value; None when unset or empty (an empty value means "the default")."""
    if name not in DEFAULTS:
        raise KeyError(f"{name} has no default: add it to DEFAULTS in config.py")
    return os.environ.get(name) or None


def env_str(name: str) -> str:
    raw = _raw(name)
    return str(DEFAULTS[name]) if raw is None else raw


def env_secret(name: str) -> str:
    """A secret: from the file named by NAME_FILE (the convention of Docker and Kubernetes secrets,
    one trailing newline dropped) when that is set, else from NAME, else the default."""
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return env_str(name)
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().removesuffix("\n")
    except OSError as exc:
        raise ValueError(f"{name}_FILE={path!r} cannot be read ({exc.strerror}); fix the path or its "
                         "permissions") from None


def env_int(name: str) -> int:
    raw = _raw(name)
    if raw is None:
        return int(DEFAULTS[name])
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer; fix it in the environment or .env") from None


def env_bool(name: str) -> bool:
    raw = _raw(name)
    if raw is None:
        return bool(DEFAULTS[name])
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use true or false")


def env_choice(name: str, choices: tuple[str, ...]) -> str:
    value = env_str(name).lower()
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


# TCP keepalives on every PostgreSQL connection: a peer that vanished without a word (a host gone,
# a dropped NAT entry) is noticed after idle + interval × count seconds, not after the kernel's
# two hours.
DB_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def engine_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """SQLAlchemy's engine options, from the DB_* settings (the factory sets them, so that an
    app's own settings apply to its engine)."""
    return {
        # A connection killed by a PostgreSQL restart is noticed before use, not mid-request.
        "pool_pre_ping": True,
        "pool_size": config["DB_POOL_SIZE"],
        "connect_args": {
            "connect_timeout": 5,
            "application_name": "order-service",
            **DB_KEEPALIVES,
            # UTC sessions: timestamps come back in UTC whatever the server's zone. No statement
            # may hold a request thread (or the consumer) for long, nor wait long for a lock
            # (an INSERT behind another session's uncommitted insert of the same order_uid);
            # either ends in an OperationalError: 503 for a reader, an outage for the consumer.
            "options": (
                "-c timezone=UTC"
                f" -c statement_timeout={config['DB_STATEMENT_TIMEOUT_MS']}"
                f" -c lock_timeout={config['DB_LOCK_TIMEOUT_MS']}"
            ),
        },
    }


# The bind of the engine that reads orders for GET /order/<id> (app/data/store.py, order_body):
# autocommit connections and no pre-ping, so that a read is one round trip, without BEGIN,
# ROLLBACK or SELECT 1 around it (a connection found broken is dropped and the read tried again).
READS_BIND = "reads"


def read_engine_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The reads engine's options (a Flask-SQLAlchemy bind), on the app's own database."""
    return {**engine_options(config), "url": config["SQLALCHEMY_DATABASE_URI"],
            "isolation_level": "AUTOCOMMIT", "pool_pre_ping": False}


class Config:
    SQLALCHEMY_DATABASE_URI = env_str("DATABASE_URL")
    DB_POOL_SIZE = env_int("DB_POOL_SIZE")
    # Milliseconds; 0 means no limit (PostgreSQL's own default).
    DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS")
    DB_LOCK_TIMEOUT_MS = env_int("DB_LOCK_TIMEOUT_MS")

    KAFKA_BOOTSTRAP_SERVERS = env_str("KAFKA_BOOTSTRAP_SERVERS")
    KAFKA_TOPIC = env_str("KAFKA_TOPIC")
    KAFKA_DLQ_TOPIC = env_str("KAFKA_DLQ_TOPIC")
    KAFKA_GROUP_ID = env_str("KAFKA_GROUP_ID")
    KAFKA_SECURITY_PROTOCOL = env_str("KAFKA_SECURITY_PROTOCOL").upper()
    KAFKA_SASL_MECHANISM = env_str("KAFKA_SASL_MECHANISM").upper()
    KAFKA_SASL_USERNAME = env_str("KAFKA_SASL_USERNAME")
    KAFKA_SASL_PASSWORD = env_secret("KAFKA_SASL_PASSWORD")
    KAFKA_SSL_CAFILE = env_str("KAFKA_SSL_CAFILE")
    KAFKA_SSL_CERTFILE = env_str("KAFKA_SSL_CERTFILE")
    KAFKA_SSL_KEYFILE = env_str("KAFKA_SSL_KEYFILE")

    # The consumer runs in gunicorn workers only; set false for a read-only replica.
    CONSUMER_ENABLED = env_bool("CONSUMER_ENABLED")
    CONSUMER_BATCH_SIZE = env_int("CONSUMER_BATCH_SIZE")
    CONSUMER_BATCH_WAIT_MS = env_int("CONSUMER_BATCH_WAIT_MS")
    CONSUMER_MAX_BACKOFF_S = env_int("CONSUMER_MAX_BACKOFF_S")

    CACHE_THRESHOLD = env_int("CACHE_THRESHOLD")
    # Orders may be up to 1 MiB each, so the count alone does not bound a worker's memory.
    CACHE_MAX_BYTES = env_int("CACHE_MAX_BYTES")
    CACHE_TTL = env_int("CACHE_TTL")
    CACHE_MISS_TTL = env_int("CACHE_MISS_TTL")
    CACHE_WARMUP = env_int("CACHE_WARMUP")

    # The edge (nginx, started by `make infra` from infra/nginx/nginx.conf.template) listens on
    # HOST:PORT, the public address, and proxies to gunicorn on APP_BIND ("host:port" or
    # "unix:/path"), which only the edge should reach.
    HOST = env_str("HOST")
    PORT = env_int("PORT")
    APP_BIND = env_str("APP_BIND")
    # X-Forwarded-For / -Proto are believed from this many proxies in front of gunicorn (werkzeug's
    # ProxyFix): 1 for the edge. 0 when clients reach gunicorn directly, or they could forge them.
    TRUSTED_PROXIES = env_int("TRUSTED_PROXIES")
    # Seconds a client may take to send its headers, to send its body, and between two reads of
    # the answer: a slow client then costs the edge one connection, never a gunicorn thread.
    EDGE_CLIENT_TIMEOUT_S = env_int("EDGE_CLIENT_TIMEOUT_S")
    # Longest request line and longest header line (nginx large_client_header_buffers).
    EDGE_MAX_HEADER_BYTES = env_int("EDGE_MAX_HEADER_BYTES")
    EDGE_WORKER_CONNECTIONS = env_int("EDGE_WORKER_CONNECTIONS")
    # The edge cache of GET /order/<id>: on tmpfs (every miss writes a file), bounded in bytes
    # and in keys (1 MiB of keys zone holds about 8,000 keys). Empty dir: `make infra` chooses
    # one under /dev/shm.
    EDGE_CACHE_DIR = env_str("EDGE_CACHE_DIR")
    EDGE_CACHE_MAX_MB = env_int("EDGE_CACHE_MAX_MB")
    EDGE_CACHE_KEYS_MB = env_int("EDGE_CACHE_KEYS_MB")
    # Addresses (or CIDR ranges), separated by spaces or commas, that the edge answers /metrics.
    METRICS_ALLOW = env_str("METRICS_ALLOW")
    # A client's X-Request-ID is kept when it matches this; otherwise the edge (or the app) makes one.
    REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
    # gunicorn keeps an idle connection this long; the edge drops its idle upstream connections
    # sooner, so it never reuses one that gunicorn is closing.
    GUNICORN_KEEPALIVE_S = env_int("GUNICORN_KEEPALIVE_S")
    # One line per request in the app's log (method, path, status, request id).
    ACCESS_LOG = env_bool("ACCESS_LOG")
    LOG_LEVEL = env_str("LOG_LEVEL").upper()
    # "plain" lines, or "json": one object a line with trace_id / span_id / request_id when known.
    LOG_FORMAT = env_choice("LOG_FORMAT", ("plain", "json"))


class TestConfig(Config):
    TESTING = True
    # Tests never touch the `orders` database: each creates a database of its own on DATABASE_URL's
    # server (harness/postgres.py) and passes its URL in as an override; without one the app refuses
    # to start.
    SQLALCHEMY_DATABASE_URI = None
    CONSUMER_ENABLED = False
    CACHE_WARMUP = 0
