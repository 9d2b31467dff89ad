"""Configuration classes. Every setting comes from the environment (or `.env`), with defaults that
match `make infra`, so a fresh clone runs without any configuration at all."""

import os
from collections.abc import Mapping
from typing import Any

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


class Config:
    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "DATABASE_URL", "postgresql+psycopg2://orders:orders@127.0.0.1:5432/orders"
    )
    DB_POOL_SIZE = _env_int("DB_POOL_SIZE", 5)
    # Milliseconds; 0 means no limit (PostgreSQL's own default).
    DB_STATEMENT_TIMEOUT_MS = _env_int("DB_STATEMENT_TIMEOUT_MS", 5000)
    DB_LOCK_TIMEOUT_MS = _env_int("DB_LOCK_TIMEOUT_MS", 2000)

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
    # Orders may be up to 1 MiB each, so the count alone does not bound a worker's memory.
    CACHE_MAX_BYTES = _env_int("CACHE_MAX_BYTES", 128 * 1024 * 1024)
    CACHE_TTL = _env_int("CACHE_TTL", 3600)
    CACHE_MISS_TTL = _env_int("CACHE_MISS_TTL", 2)
    CACHE_WARMUP = _env_int("CACHE_WARMUP", 1000)

    PORT = _env_int("PORT", 8080)
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
