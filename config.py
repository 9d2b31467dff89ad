"""Configuration classes. Every setting comes from the environment (or `.env`), with defaults that
match `make infra`, so a fresh clone runs without any configuration at all."""

import os

from dotenv import load_dotenv

# `.env` fills in what the environment does not set; the environment always wins.
load_dotenv()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer; fix it in the environment or .env") from None


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use true or false")


class Config:
    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "DATABASE_URL", "postgresql+psycopg2://orders:orders@127.0.0.1:5432/orders"
    )
    SQLALCHEMY_ENGINE_OPTIONS = {
        # A connection killed by a PostgreSQL restart is noticed before use, not mid-request.
        "pool_pre_ping": True,
        "pool_size": _env_int("DB_POOL_SIZE", 5),
        # UTC sessions: timestamps come back in UTC whatever the server's zone.
        "connect_args": {
            "connect_timeout": 5,
            "application_name": "order-service",
            "options": "-c timezone=UTC",
        },
    }

    KAFKA_BOOTSTRAP_SERVERS = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    KAFKA_TOPIC = os.environ.get("KAFKA_TOPIC", "orders")
    KAFKA_DLQ_TOPIC = os.environ.get("KAFKA_DLQ_TOPIC", "orders-dlq")
    KAFKA_GROUP_ID = os.environ.get("KAFKA_GROUP_ID", "order-service")

    # The consumer runs in gunicorn workers only; set false for a read-only replica.
    CONSUMER_ENABLED = _env_bool("CONSUMER_ENABLED", True)
    CONSUMER_BATCH_SIZE = _env_int("CONSUMER_BATCH_SIZE", 500)
    CONSUMER_BATCH_WAIT_MS = _env_int("CONSUMER_BATCH_WAIT_MS", 200)
    CONSUMER_MAX_BACKOFF_S = _env_int("CONSUMER_MAX_BACKOFF_S", 10)

    CACHE_THRESHOLD = _env_int("CACHE_THRESHOLD", 20_000)
    CACHE_TTL = _env_int("CACHE_TTL", 3600)
    CACHE_MISS_TTL = _env_int("CACHE_MISS_TTL", 2)
    CACHE_WARMUP = _env_int("CACHE_WARMUP", 1000)

    # The edge (nginx, started by `make infra` from infra/nginx/nginx.conf.template) listens on
    # HOST:PORT, the public address, and proxies to gunicorn on APP_BIND ("host:port" or
    # "unix:/path"), which only the edge should reach.
    HOST = os.environ.get("HOST", "0.0.0.0")
    PORT = _env_int("PORT", 8080)
    APP_BIND = os.environ.get("APP_BIND", "127.0.0.1:8081")
    # X-Forwarded-For / -Proto are believed from this many proxies in front of gunicorn (werkzeug's
    # ProxyFix): 1 for the edge. 0 when clients reach gunicorn directly, or they could forge them.
    TRUSTED_PROXIES = _env_int("TRUSTED_PROXIES", 1)
    # Seconds a client may take to send its headers, to send its body, and between two reads of
    # the answer: a slow client then costs the edge one connection, never a gunicorn thread.
    EDGE_CLIENT_TIMEOUT_S = _env_int("EDGE_CLIENT_TIMEOUT_S", 10)
    # Longest request line and longest header line (nginx large_client_header_buffers).
    EDGE_MAX_HEADER_BYTES = _env_int("EDGE_MAX_HEADER_BYTES", 8192)
    EDGE_WORKER_CONNECTIONS = _env_int("EDGE_WORKER_CONNECTIONS", 4096)
    # The edge cache of GET /order/<id>: on tmpfs (every miss writes a file), bounded in bytes
    # and in keys (1 MiB of keys zone holds about 8,000 keys). Empty dir: `make infra` chooses
    # one under /dev/shm.
    EDGE_CACHE_DIR = os.environ.get("EDGE_CACHE_DIR", "")
    EDGE_CACHE_MAX_MB = _env_int("EDGE_CACHE_MAX_MB", 256)
    EDGE_CACHE_KEYS_MB = _env_int("EDGE_CACHE_KEYS_MB", 16)
    # Addresses (or CIDR ranges), separated by spaces or commas, that the edge answers /metrics.
    METRICS_ALLOW = os.environ.get("METRICS_ALLOW", "127.0.0.1 ::1")
    # A client's X-Request-ID is kept when it matches this; otherwise the edge (or the app) makes one.
    REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
    # gunicorn keeps an idle connection this long; the edge drops its idle upstream connections
    # sooner, so it never reuses one that gunicorn is closing.
    GUNICORN_KEEPALIVE_S = _env_int("GUNICORN_KEEPALIVE_S", 5)
    # One line per request in the app's log (method, path, status, request id).
    ACCESS_LOG = _env_bool("ACCESS_LOG", True)
    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()


class TestConfig(Config):
    TESTING = True
    # Tests never touch the `orders` database: conftest creates a database of its own and passes
    # its URL in as an override.
    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg2://orders:orders@127.0.0.1:5432/orders_test"
    )
    CONSUMER_ENABLED = False
    CACHE_WARMUP = 0
