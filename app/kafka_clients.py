"""Every Kafka client of the service is built here: the consumer, the dead-letter producer,
`flask seed-orders`, `flask dlq`, readiness, and (through them) the test harness and the benchmarks.

One place holds what every client needs the same way: the bootstrap servers, the pinned protocol
version, and how the client proves who it is (TLS and SASL). Each caller adds only the options of
its own role (acks, fetch sizes, a client id).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.client_async import KafkaClient

# If the client's 2-second version probe fails, it falls back to requests that Kafka 4 no longer
# accepts (KIP-896); pinned, no client probes, and none contacts the broker when it is created.
KAFKA_API_VERSION = (2, 6, 0)
# How long a command's producer waits for Kafka (the topic's metadata, room in its buffer) before
# it gives up with unreachable_message; `flask seed-orders --kafka-wait` changes it.
COMMAND_KAFKA_WAIT_S = 10

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSettings:
    """Where the brokers are and how to authenticate to them (the KAFKA_* settings)."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    # Never in a repr, a log line or an error message.
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "KafkaSettings":
        """From an app's config (or any mapping with the KAFKA_* keys); raises ValueError naming
        the setting that is wrong."""
        settings = cls(
            bootstrap_servers=config["KAFKA_BOOTSTRAP_SERVERS"],
            security_protocol=(config.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            sasl_mechanism=(config.get("KAFKA_SASL_MECHANISM") or "").upper(),
            sasl_username=config.get("KAFKA_SASL_USERNAME") or "",
            sasl_password=config.get("KAFKA_SASL_PASSWORD") or "",
            ssl_cafile=config.get("KAFKA_SSL_CAFILE") or "",
            ssl_certfile=config.get("KAFKA_SSL_CERTFILE") or "",
            ssl_keyfile=config.get("KAFKA_SSL_KEYFILE") or "",
        )
        settings.check()
        return settings

    def with_bootstrap(self, bootstrap_servers: str) -> "KafkaSettings":
        return replace(self, bootstrap_servers=bootstrap_servers)

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def check(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.security_protocol!r} is not one of "
                             f"{', '.join(SECURITY_PROTOCOLS)}")
        if self.uses_sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ValueError(f"KAFKA_SASL_MECHANISM={self.sasl_mechanism!r} is not one of "
                                 f"{', '.join(SASL_MECHANISMS)} (KAFKA_SECURITY_PROTOCOL is "
                                 f"{self.security_protocol})")
            if not self.sasl_username or not self.sasl_password:
                raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs "
                                 "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("mutual TLS needs both KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE")
        # Settings that the protocol would silently ignore: a user who set them meant TLS or SASL,
        # and must not be connected in the clear, nor anonymously, without a word.
        if not self.uses_tls and (self.ssl_cafile or self.ssl_certfile):
            raise ValueError(f"KAFKA_SSL_* is set, but KAFKA_SECURITY_PROTOCOL={self.security_protocol} does "
                             "not use TLS: set it to SSL or SASL_SSL (or unset KAFKA_SSL_*)")
        if not self.uses_sasl and (self.sasl_username or self.sasl_password):
            raise ValueError(f"KAFKA_SASL_USERNAME/PASSWORD are set, but KAFKA_SECURITY_PROTOCOL="
                             f"{self.security_protocol} does not use SASL: set it to SASL_SSL (or unset "
                             "them)")

    def options(self) -> dict[str, Any]:
        """The options every kafka-python client of the service is given."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "api_version": KAFKA_API_VERSION,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            options.update(
                # The broker's certificate must name the host we dialled (kafka-python's default,
                # stated so that nobody turns it off by accident).
                ssl_check_hostname=True,
                ssl_cafile=self.ssl_cafile or None,
                ssl_certfile=self.ssl_certfile or None,
                ssl_keyfile=self.ssl_keyfile or None,
            )
        if self.uses_sasl:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password)
        return options

    def describe(self) -> str:
        """Where and how, for messages: never the password."""
        how = self.security_protocol
        if self.uses_sasl:
            how += f", {self.sasl_mechanism} as {self.sasl_username}"
        return f"{self.bootstrap_servers} ({how})"


def new_consumer(settings: KafkaSettings, **options: Any) -> KafkaConsumer:
    return KafkaConsumer(**settings.options(), **options)


def new_producer(settings: KafkaSettings, **options: Any) -> KafkaProducer:
    return KafkaProducer(**settings.options(), **options)


def new_admin(settings: KafkaSettings, **options: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**settings.options(), **options)


def new_client(settings: KafkaSettings, **options: Any) -> KafkaClient:
    """The protocol-level client, for requests the others do not make (the test harness sends
    record batches built byte by byte with it)."""
    return KafkaClient(**settings.options(), **options)


def unreachable_message(settings: KafkaSettings, exc: BaseException) -> str:
    """What every command says when the broker does not answer, and what to do about it."""
    return (f"Kafka is not reachable at {settings.describe()}: {exc.__class__.__name__}. Start it with "
            "`make infra`, or point KAFKA_BOOTSTRAP_SERVERS (and KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, "
            "KAFKA_SSL_*) at a running broker.")
