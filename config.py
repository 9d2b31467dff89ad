"""Configuration classes. Every setting comes from the environment (or `.env`), with defaults that
match `make infra`, so a fresh clone runs without any configuration at all."""

import os
import pwd
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

# `.env` fills in what the environment does not set; the environment always wins.
load_dotenv()


# Every variable the service, gunicorn.conf.py and `make infra` read, with its default: the one
# place a default is written. gunicorn.conf.py and devstack/ (`make infra`) read their settings from
# here; .env.example, README's table and docker-compose.yml are checked against it
# (tests/unit/test_defaults.py).
DEFAULTS: dict[str, str | int | bool] = {
    # The service's role: SELECT and INSERT only (the migrations grant them). Its password may
    # come from DATABASE_PASSWORD (or DATABASE_PASSWORD_FILE) instead of the URL.
    "DATABASE_URL": "postgresql+psycopg2://order_service:dev-service-password@127.0.0.1:5432/orders",
    "DATABASE_PASSWORD": "",  # or DATABASE_PASSWORD_FILE; empty: the URL's own
    # The owner, for `flask db upgrade` only. Unset while DATABASE_URL is set: DATABASE_URL (one
    # role does both), so a deployment that sets only DATABASE_URL migrates as it always did.
    "MIGRATION_DATABASE_URL": "postgresql+psycopg2://orders:orders@127.0.0.1:5432/orders",
    "MIGRATION_DATABASE_PASSWORD": "",  # or MIGRATION_DATABASE_PASSWORD_FILE
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "KAFKA_TOPIC": "orders",
    "KAFKA_DLQ_TOPIC": "orders-dlq",
    "KAFKA_GROUP_ID": "order-service",
    "KAFKA_TOPIC_PARTITIONS": 6,  # read by `make infra` only
    "KAFKA_CONTROLLER_PORT": 9093,  # `make infra`'s broker only (its KRaft controller listener)
    "KAFKA_SASL_PORT": 9094,  # `make infra` only: the local broker's SASL_SSL listener
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
    "ACCESS_LOG_FLUSH_MS": 200,
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
    "CONSUMER_HEARTBEAT_INTERVAL_MS": 1000,
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
    # Who may see an order (app/auth/): bearer tokens from an OpenID Connect provider, checked
    # against its JWKS; the web page signs people in with the authorization-code flow + PKCE.
    "AUTH_ENABLED": True,
    # `make infra` starts Keycloak at this issuer's host and port, serving this realm.
    "AUTH_ISSUER": "http://127.0.0.1:8180/realms/order-service",
    "AUTH_AUDIENCE": "order-service",
    "AUTH_SCOPE_CLAIM": "scope",  # some providers (Entra ID) say "scp"
    "AUTH_ALGORITHMS": "RS256",  # asymmetric only: RS*, PS*, ES*, EdDSA
    "AUTH_LEEWAY_S": 30,
    "AUTH_PROVIDER_TIMEOUT_S": 3,
    "AUTH_JWKS_REFRESH_S": 30,  # at most one refresh of the keys for an unknown kid this often
    "AUTH_EDGE_CACHE_S": 10,
    "AUTH_WEB_CLIENT_ID": "order-service-web",
    "AUTH_WEB_CLIENT_SECRET": "",  # or AUTH_WEB_CLIENT_SECRET_FILE; `make infra` makes one
    "AUTH_CLI_CLIENT_ID": "order-service-cli",
    "AUTH_CLI_CLIENT_SECRET": "",  # or AUTH_CLI_CLIENT_SECRET_FILE; `make infra` makes one
    "SECRET_KEY": "",  # signs the page's session cookie; empty: a random one per start
    "KEYCLOAK_MANAGEMENT_PORT": 8181,  # `make infra` only
    # Requests that pass the edge's caches (unknown ids, the list, the page), per client address
    # and per token: a steady rate per second and a burst above it.
    "EDGE_LOOKUP_RATE": 50,
    "EDGE_LOOKUP_BURST": 100,
}

# The secrets `make infra` makes for its own provider (devstack/keycloak.py), one file each in
# dev_secrets_dir(): used when neither NAME nor NAME_FILE is set.
DEV_SECRETS = ("AUTH_WEB_CLIENT_SECRET", "AUTH_CLI_CLIENT_SECRET")


def order_service_home() -> Path:
    """Where `make infra` keeps data, downloads and logs: ORDER_SERVICE_HOME, by default
    ~/.cache/order-service (under $XDG_CACHE_HOME when that is set)."""
    configured = os.environ.get("ORDER_SERVICE_HOME")
    if configured:
        return Path(configured).expanduser().absolute()
    return (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "order-service").absolute()


def dev_secrets_dir() -> Path:
    return order_service_home() / "keycloak" / "secrets"


# How long the group waits for a consumer's heartbeat before it hands the consumer's partitions to
# the others (kafka-python's default, passed explicitly because the heartbeat's range derives from it).
CONSUMER_SESSION_TIMEOUT_MS = 10_000

# The range of every whole-number setting, and what it counts: a start with anything else stops
# with one message naming the variable (config.py's import for the environment and .env, the app
# factory for a value given in code). Each default sits in its range (tests/unit/test_defaults.py).
LIMITS: dict[str, tuple[int, int, str]] = {
    "KAFKA_TOPIC_PARTITIONS": (1, 10_000, "partitions of the topics"),
    "KAFKA_CONTROLLER_PORT": (1, 65_535, "a TCP port"),
    "KAFKA_SASL_PORT": (1, 65_535, "a TCP port"),
    "KEYCLOAK_MANAGEMENT_PORT": (1, 65_535, "a TCP port"),
    "PORT": (1, 65_535, "a TCP port"),
    "TRUSTED_PROXIES": (0, 10, "proxies in front of gunicorn"),
    "EDGE_CLIENT_TIMEOUT_S": (1, 3_600, "seconds"),
    "EDGE_MAX_HEADER_BYTES": (1_024, 65_536, "bytes"),
    "EDGE_WORKER_CONNECTIONS": (16, 1_000_000, "connections"),
    "EDGE_CACHE_MAX_MB": (1, 1_048_576, "MiB"),
    "EDGE_CACHE_KEYS_MB": (1, 4_096, "MiB"),
    "GUNICORN_KEEPALIVE_S": (0, 3_600, "seconds (0: no keep-alive)"),
    "ACCESS_LOG_FLUSH_MS": (0, 10_000, "milliseconds an access line may wait to be written (0: none)"),
    "WEB_CONCURRENCY": (1, 256, "worker processes"),
    "GUNICORN_THREADS": (1, 1_024, "threads per worker"),
    "GUNICORN_TIMEOUT": (1, 3_600, "seconds"),
    "GUNICORN_GRACEFUL_TIMEOUT": (1, 3_600, "seconds"),
    "CONSUMER_BATCH_SIZE": (1, 100_000, "records per poll"),
    "CONSUMER_BATCH_WAIT_MS": (1, 60_000, "milliseconds (0 would make the consumer spin)"),
    "CONSUMER_MAX_BACKOFF_S": (1, 3_600, "seconds"),
    "CONSUMER_HEARTBEAT_INTERVAL_MS": (100, CONSUMER_SESSION_TIMEOUT_MS // 3,
                                       "milliseconds between a consumer's heartbeats (a third of the "
                                       "session timeout at most, as Kafka asks)"),
    "CACHE_THRESHOLD": (0, 100_000_000, "orders per worker (0: no cache)"),
    "CACHE_MAX_BYTES": (0, 1 << 40, "bytes per worker (0: no cache)"),
    # cachelib takes 0 for "never expires", and then drops such entries first whenever it prunes.
    "CACHE_TTL": (1, 31_536_000, "seconds an order stays cached (0 is not 'forever' here)"),
    "CACHE_MISS_TTL": (0, 86_400, "seconds an unknown id is remembered (0: never)"),
    "CACHE_WARMUP": (0, 100_000_000, "orders"),
    "DB_POOL_SIZE": (1, 1_000, "connections per worker"),
    "DB_STATEMENT_TIMEOUT_MS": (0, 3_600_000, "milliseconds (0: no limit)"),
    "DB_LOCK_TIMEOUT_MS": (0, 3_600_000, "milliseconds (0: no limit)"),
    "AUTH_LEEWAY_S": (0, 300, "seconds of clock difference allowed on exp and nbf"),
    "AUTH_PROVIDER_TIMEOUT_S": (1, 60, "seconds a request thread may wait for the provider"),
    "AUTH_JWKS_REFRESH_S": (1, 86_400, "seconds between two key fetches for unknown kids"),
    "AUTH_EDGE_CACHE_S": (1, 300, "seconds the edge keeps a token's answer"),
    "EDGE_LOOKUP_RATE": (1, 1_000_000, "requests per second"),
    "EDGE_LOOKUP_BURST": (0, 1_000_000, "requests above the rate"),
}


def check_int(name: str, value: int) -> int:
    """`value` if it is in the setting's range (LIMITS), else ValueError naming the variable."""
    low, high, unit = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}={value!r} is out of range: {unit}, from {low} to {high}. "
                         "Fix it in the environment or .env.")
    return value


def check_settings(config: Mapping[str, Any]) -> None:
    """Every whole-number setting `config` holds is in its range (the app factory's check, for
    values that did not come through env_int)."""
    for name in LIMITS:
        if name in config:
            check_int(name, config[name])


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
    one trailing newline dropped) when that is set, else from NAME, else (for DEV_SECRETS) the one
    `make infra` made for its own provider, else the default."""
    path = os.environ.get(f"{name}_FILE")
    if not path:
        value = env_str(name)
        dev_file = dev_secrets_dir() / name
        if value or name not in DEV_SECRETS or not dev_file.is_file():
            return value
        path = str(dev_file)
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().removesuffix("\n")
    except OSError as exc:
        raise ValueError(f"{name}_FILE={path!r} cannot be read ({exc.strerror}); fix the path or its "
                         "permissions") from None


def database_url(url_name: str, password_name: str) -> str:
    """A PostgreSQL URL, with its password replaced by the secret `password_name` when one is set
    (from NAME or NAME_FILE), so that the password need not be in the URL."""
    url = env_str(url_name)
    password = env_secret(password_name)
    if not password:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).set(password=password).render_as_string(hide_password=False)


def migration_database_url() -> str:
    """The owner's URL (`flask db upgrade`): MIGRATION_DATABASE_URL; when only DATABASE_URL is set,
    DATABASE_URL (one role does both); with neither, the local owner that `make infra` creates."""
    if _raw("MIGRATION_DATABASE_URL") is None and _raw("DATABASE_URL") is not None:
        return database_url("DATABASE_URL", "DATABASE_PASSWORD")
    return database_url("MIGRATION_DATABASE_URL", "MIGRATION_DATABASE_PASSWORD")


def env_int(name: str) -> int:
    raw = _raw(name)
    if raw is None:
        return int(DEFAULTS[name])
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer; fix it in the environment or .env") from None
    return check_int(name, value) if name in LIMITS else value


def _check_environment() -> None:
    """Every whole-number setting, checked as the configuration loads (those only gunicorn or
    `make infra` read too): a value out of range never waits for the part that uses it."""
    for name in LIMITS:
        env_int(name)


_check_environment()


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


def private_dir(path: str | os.PathLike, mode: int | None = 0o700, owner: int | None = None,
                group: int | None = None, also_owned_by: tuple[int, ...] = ()) -> Path:
    """A directory of our own at `path`, safe on a host shared with other users: created with
    `mode` when missing (its parent must exist), else used only when it is a real directory (a
    symlink is never followed) that belongs to `owner` (default: this process's user; or to one
    of `also_owned_by`, then taken over). Its owner, `group` and `mode` (None: left as it is) are
    then set, so a directory made wider by an older version is narrowed. Raises PermissionError
    saying what to do."""
    path = Path(path)
    uid = os.geteuid() if owner is None else owner
    created = True
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        created = False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        raise PermissionError(
            f"{path} is a symbolic link or not a directory, so it is refused: following it could put "
            f"our files, or hand another directory, where someone else chose. Remove it (rm '{path}') "
            "and retry.") from None
    try:
        found = os.fstat(fd).st_uid
        if not created and found not in (uid, *also_owned_by):
            raise PermissionError(
                f"{path} belongs to {_user_name(found)}, not {_user_name(uid)}, so it is refused: "
                f"someone else may read or plant files in it. If it is ours, "
                f"chown {_user_name(uid)} '{path}'; otherwise remove it and retry.")
        if found != uid or group is not None:
            os.fchown(fd, uid, -1 if group is None else group)
        if mode is not None:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return path


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


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
    SQLALCHEMY_DATABASE_URI = database_url("DATABASE_URL", "DATABASE_PASSWORD")
    MIGRATION_DATABASE_URL = migration_database_url()
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
    CONSUMER_HEARTBEAT_INTERVAL_MS = env_int("CONSUMER_HEARTBEAT_INTERVAL_MS")

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
    # How long a line may wait to be written with others (app/logs.py AccessLog; 0: each at once).
    ACCESS_LOG_FLUSH_MS = env_int("ACCESS_LOG_FLUSH_MS")
    LOG_LEVEL = env_str("LOG_LEVEL").upper()
    # "plain" lines, or "json": one object a line with trace_id / span_id / request_id when known.
    LOG_FORMAT = env_choice("LOG_FORMAT", ("plain", "json"))

    # Who may see an order (app/auth/, README "Security").
    AUTH_ENABLED = env_bool("AUTH_ENABLED")
    # Exactly as the provider writes `iss` (Auth0's ends with a slash).
    AUTH_ISSUER = env_str("AUTH_ISSUER")
    AUTH_AUDIENCE = env_str("AUTH_AUDIENCE")
    AUTH_SCOPE_CLAIM = env_str("AUTH_SCOPE_CLAIM")
    AUTH_ALGORITHMS = env_str("AUTH_ALGORITHMS")
    # Seconds of clock difference allowed on exp and nbf.
    AUTH_LEEWAY_S = env_int("AUTH_LEEWAY_S")
    # The longest a request thread waits for the provider (its keys, its metadata).
    AUTH_PROVIDER_TIMEOUT_S = env_int("AUTH_PROVIDER_TIMEOUT_S")
    AUTH_JWKS_REFRESH_S = env_int("AUTH_JWKS_REFRESH_S")
    # How long the edge keeps a token's answer (never past the token's exp).
    AUTH_EDGE_CACHE_S = env_int("AUTH_EDGE_CACHE_S")
    AUTH_WEB_CLIENT_ID = env_str("AUTH_WEB_CLIENT_ID")
    AUTH_WEB_CLIENT_SECRET = env_secret("AUTH_WEB_CLIENT_SECRET")
    AUTH_CLI_CLIENT_ID = env_str("AUTH_CLI_CLIENT_ID")
    AUTH_CLI_CLIENT_SECRET = env_secret("AUTH_CLI_CLIENT_SECRET")
    SECRET_KEY = env_secret("SECRET_KEY")
    EDGE_LOOKUP_RATE = env_int("EDGE_LOOKUP_RATE")
    EDGE_LOOKUP_BURST = env_int("EDGE_LOOKUP_BURST")


class TestConfig(Config):
    TESTING = True
    # One key for every app of the test process, so that a page session signed in once can be
    # copied into any test's client.
    SECRET_KEY = os.urandom(32).hex()
    # Tests never touch the `orders` database: each creates a database of its own on DATABASE_URL's
    # server (harness/postgres.py) and passes its URL in as an override; without one the app refuses
    # to start.
    SQLALCHEMY_DATABASE_URI = None
    CONSUMER_ENABLED = False
    CACHE_WARMUP = 0
