"""What `make infra` set up for TLS and least privilege, found where it put it (never hard-coded):
the home (ORDER_SERVICE_HOME, config.order_service_home), the local CA, the SASL_SSL
listener's settings (`client-sasl.env`), and Kafka users of a test's own with exactly the ACLs that
`make infra` gives each role (devstack/kafka_security.py), removed afterwards."""

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from config import order_service_home
from devstack import kafka_security
from devstack.certs import ensure_ca
from harness.kafka import Topics, admin

SASL_ENV_FILE = "client-sasl.env"


def local_ca() -> Path:
    """The CA that signs the local TLS listeners' certificates."""
    path = order_service_home() / "tls" / "ca.crt"
    assert path.exists(), f"{path} is missing: run `make infra`"
    return path


def sasl_settings() -> dict[str, str]:
    """The service user's KAFKA_* settings for the local SASL_SSL listener, as `make infra` wrote them."""
    path = order_service_home() / "kafka" / SASL_ENV_FILE
    assert path.exists(), (f"{path} is missing: `make infra` writes it once the broker has its SASL_SSL "
                           "listener (a broker started before the listener existed needs `make infra-down`, "
                           "then `make infra`)")
    return {name: value or "" for name, value in dotenv_values(path).items()}


def rogue_ca(directory: Path) -> Path:
    """A CA of its own, which signed nothing the broker or the server holds."""
    return ensure_ca(directory).cert_path


@dataclass
class SaslUser:
    name: str
    password: str
    password_file: Path

    def env(self, sasl: dict[str, str], **overrides: str) -> dict[str, str]:
        """KAFKA_* for this user on the SASL_SSL listener (the password from its file)."""
        env = {**sasl, "KAFKA_SASL_USERNAME": self.name, "KAFKA_SASL_PASSWORD_FILE": str(self.password_file)}
        env.pop("KAFKA_SASL_PASSWORD", None)
        return {**env, **overrides}

    def config(self, sasl: dict[str, str]) -> dict[str, str]:
        """The same as create_app overrides (KAFKA_SASL_PASSWORD, as config.py reads the file)."""
        env = self.env(sasl)
        env.pop("KAFKA_SASL_PASSWORD_FILE")
        return {**env, "KAFKA_SASL_PASSWORD": self.password}


@dataclass
class SecureKafka:
    """Three users of a test's own on `topics` (service, producer, operator), as `make infra` makes
    them for the configured topics; `sasl` is the listener's settings."""

    bootstrap: str
    topics: Topics
    sasl: dict[str, str]
    directory: Path
    users: dict[str, SaslUser] = field(default_factory=dict)
    grants: list = field(default_factory=list)

    def add_user(self, role: str, broker_password: str | None = None) -> SaslUser:
        """A new SCRAM user; its password file holds its password, and the broker knows
        `broker_password` when one is given (a wrong password, as a test wants one)."""
        name = f"test-{role}-{uuid.uuid4().hex[:8]}"
        password = secrets.token_urlsafe(18)
        password_file = self.directory / f"{name}.password"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        self.users[role] = SaslUser(name, password, password_file)
        self.set_password(role, broker_password or password)
        return self.users[role]

    def set_password(self, role: str, password: str) -> None:
        with _admin(self.bootstrap) as client:
            kafka_security.set_scram_password(client, self.users[role].name, password)

    def grant(self, grants: list) -> None:
        self.grants += grants
        with _admin(self.bootstrap) as client:
            kafka_security.grant(client, grants)

    def role_grants(self, role: str) -> list:
        """What `make infra` grants `role` (devstack/kafka_security.py), for this test's topics."""
        user, topics = self.users[role].name, self.topics
        return {
            "service": lambda: kafka_security.service_grants(user, topics.orders, topics.dlq, topics.group),
            "producer": lambda: kafka_security.producer_grants(user, topics.orders),
            "operator": lambda: kafka_security.operator_grants(user, topics.orders, topics.dlq, topics.group),
        }[role]()

    def remove(self) -> None:
        with _admin(self.bootstrap) as client:
            if self.grants:
                kafka_security.revoke(client, self.grants)
            for user in self.users.values():
                kafka_security.delete_scram_user(client, user.name)


@contextmanager
def _admin(bootstrap: str) -> Iterator:
    client = admin(bootstrap)
    try:
        yield client
    finally:
        client.close()


@contextmanager
def secure_kafka(bootstrap: str, topics: Topics, directory: Path) -> Iterator[SecureKafka]:
    """Users of the test's own on the local SASL_SSL listener; they and their ACLs go afterwards."""
    secure = SecureKafka(bootstrap, topics, sasl_settings(), directory)
    try:
        yield secure
    finally:
        secure.remove()
