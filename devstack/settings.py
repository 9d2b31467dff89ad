"""What `make infra` works with: the configured addresses (config.py's settings and DEFAULTS, .env
included) and where its files live."""

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from config import database_url, env_int, env_str, migration_database_url, order_service_home
from devstack.output import Failure

ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = ("127.0.0.1", "localhost")
# Internal, for the tests: a directory whose Maven repository and Kafka jars are used instead of
# the home's (so that a test's fresh home fetches nothing), and another PostgreSQL settings file.
DOWNLOADS_VARIABLE = "DEVSTACK_DOWNLOADS"
POSTGRES_CONF_VARIABLE = "DEVSTACK_POSTGRES_CONF"


def masked(url: str) -> str:
    """A URL as it may be printed: the password, if any, replaced by ***."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _database_url(name: str, raw: str) -> URL:
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        url = None
    if url is None or not url.drivername.startswith("postgres") or not url.host or not url.database:
        raise Failure(f"cannot parse {name}={masked(raw)} (expected "
                      "postgresql+psycopg2://user:password@host:port/dbname)")
    return url


def _kafka_address() -> tuple[str, int]:
    """The first entry of KAFKA_BOOTSTRAP_SERVERS: the one checked, or started."""
    raw = env_str("KAFKA_BOOTSTRAP_SERVERS")
    first = raw.split(",")[0].strip().split("://")[-1]
    match = re.fullmatch(r"([^:]+):(\d+)", first)
    if not match:
        raise Failure(f"cannot parse KAFKA_BOOTSTRAP_SERVERS={raw} (expected host:port)")
    return match[1], int(match[2])


@dataclass(frozen=True)
class Settings:
    home: Path
    downloads: Path
    database_url: URL  # the service's role (DATABASE_URL)
    owner_url: URL  # the owner's, for migrations (MIGRATION_DATABASE_URL)
    kafka_host: str
    kafka_port: int
    kafka_controller_port: int
    kafka_sasl_port: int
    group_id: str
    topic: str
    dlq_topic: str
    partitions: int
    edge_cache_dir: Path
    postgres_conf: Path

    @classmethod
    def from_env(cls) -> "Settings":
        home_dir = order_service_home()
        kafka_host, kafka_port = _kafka_address()
        try:
            return cls(
                home=home_dir,
                downloads=Path(os.environ.get(DOWNLOADS_VARIABLE) or home_dir),
                database_url=_database_url("DATABASE_URL", database_url("DATABASE_URL", "DATABASE_PASSWORD")),
                owner_url=_database_url("MIGRATION_DATABASE_URL", migration_database_url()),
                kafka_host=kafka_host,
                kafka_port=kafka_port,
                kafka_controller_port=env_int("KAFKA_CONTROLLER_PORT"),
                kafka_sasl_port=env_int("KAFKA_SASL_PORT"),
                group_id=env_str("KAFKA_GROUP_ID"),
                topic=env_str("KAFKA_TOPIC"),
                dlq_topic=env_str("KAFKA_DLQ_TOPIC"),
                partitions=env_int("KAFKA_TOPIC_PARTITIONS"),
                edge_cache_dir=Path(env_str("EDGE_CACHE_DIR") or default_edge_cache_dir(home_dir)),
                postgres_conf=Path(os.environ.get(POSTGRES_CONF_VARIABLE)
                                   or ROOT / "infra" / "postgres" / "postgresql.conf"),
            )
        except ValueError as exc:
            raise Failure(str(exc)) from None

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def ca_dir(self) -> Path:
        """The local CA that signs the TLS listeners' certificates (clients trust its ca.crt)."""
        return self.home / "tls"

    def home_hash(self) -> str:
        return path_hash(self.home)


def path_hash(path: Path) -> str:
    """A short name for a home, for the paths of it that live outside it."""
    return hashlib.sha256(str(path).encode()).hexdigest()[:12]


def default_edge_cache_dir(home_dir: Path) -> Path:
    """On tmpfs when there is one (every cache miss writes a file), else in the home."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return Path("/dev/shm") / f"order-service-{path_hash(home_dir)}"
    return home_dir / "nginx" / "cache"


def shown(path: Path) -> str:
    """A path as messages give it: relative to the repository when it is in it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS
