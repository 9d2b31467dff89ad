"""Whether Kafka accepts this service, and if not, why, in words a user can act on.

kafka-python keeps the reason to itself: a wrong password reads "Connection reset during recv", an
untrusted certificate "SSL connection closed by server during handshake", and the client retries
every second, for good, logging a traceback each time. So before the consumer builds its clients,
and for /readyz, one probe walks the steps a client takes on one connection, with the service's
own settings (app/kafka_clients.py) and the protocol's own error codes:

  TCP connect -> TLS handshake -> SASL handshake and authentication -> describe KAFKA_TOPIC and
  KAFKA_DLQ_TOPIC -> read KAFKA_TOPIC (a fetch at its end: no record comes back) -> find
  KAFKA_GROUP_ID's coordinator

and names the first one that fails: unreachable, tls, authentication, authorization (an ACL),
topic (missing) or configuration. The text never holds a secret: it is built from the settings'
names, the user name and the broker's and OpenSSL's messages, and the password is scrubbed from
those all the same.

A KafkaHealth keeps the last verdict of one process: /readyz reads it (a stale one is refreshed on a
thread of its own, so no request waits on Kafka but the very first), the consumer asks for a fresh
one before it connects, and a change of verdict is logged once.
"""

import io
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kafka.protocol.admin import SaslAuthenticateRequest, SaslHandShakeRequest
from kafka.protocol.api import Request
from kafka.protocol.commit import GroupCoordinatorRequest
from kafka.protocol.fetch import FetchRequest
from kafka.protocol.metadata import MetadataRequest
from kafka.protocol.offset import OffsetRequest
from kafka.protocol.types import Int32
from kafka.scram import ScramClient

from app.kafka_clients import KafkaSettings

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0
# A stale verdict is refreshed (in the background) when /readyz is asked after this long.
MAX_AGE_S = 15.0
# Any answer to the probe's small requests fits; a peer that announces more is not a broker.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
CLIENT_ID = "order-service-probe"

# The protocol's error codes the probe tells apart (kafka.errors has them all).
UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER, TOPIC_DENIED, GROUP_DENIED = 3, 6, 29, 30
UNSUPPORTED_SASL_MECHANISM = 33
LATEST_OFFSET = -1

# What /readyz may say is wrong with Kafka; the consumer must not connect with the REFUSALS (a
# client would only retry and log the same refusal, every second).
PROBLEMS = ("unreachable", "tls", "authentication", "authorization", "topic", "configuration", "protocol")
REFUSALS = frozenset({"tls", "authentication", "authorization", "configuration", "protocol"})


@dataclass(frozen=True)
class KafkaVerdict:
    """`problem` is "" when Kafka accepts the service; else one of PROBLEMS."""

    problem: str = ""
    reason: str = ""
    checked_at: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def refused(self) -> bool:
        return self.problem in REFUSALS

    def as_json(self) -> dict[str, Any]:
        return {"ok": True} if self.ok else {"ok": False, "problem": self.problem, "error": self.reason}


class _Refused(Exception):
    def __init__(self, problem: str, reason: str) -> None:
        super().__init__(reason)
        self.problem, self.reason = problem, reason


@dataclass(frozen=True)
class ServiceKafka:
    """What the service needs of Kafka: its settings, the topic it reads, the one it writes, its
    group. Without them (a command's check), the topics it would `describe`, if any."""

    settings: KafkaSettings
    topic: str = ""
    dlq_topic: str = ""
    group: str = ""
    describe: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ServiceKafka":
        return cls(KafkaSettings.from_config(config), config["KAFKA_TOPIC"], config["KAFKA_DLQ_TOPIC"],
                   config["KAFKA_GROUP_ID"])

    @property
    def who(self) -> str:
        return f"User:{self.settings.sasl_username}" if self.settings.uses_sasl else "the anonymous user"


class _Wire:
    """Kafka's framing on one socket: size-prefixed requests and their responses, in turn."""

    def __init__(self, sock: socket.socket, address: str, deadline: float) -> None:
        self.sock, self.address, self.deadline, self.correlation_id = sock, address, deadline, 0

    def call(self, request: Request) -> Any:
        self.correlation_id += 1
        # Held in a name: kafka-python's Struct.encode is a weak method, dead with a temporary.
        header = request.build_request_header(self.correlation_id, CLIENT_ID)
        payload = header.encode() + request.encode()
        self._settimeout()
        self.sock.sendall(Int32.encode(len(payload)) + payload)
        head = self._read(4)
        size = Int32.decode(io.BytesIO(head))
        if not 0 <= size <= MAX_RESPONSE_BYTES:
            # 0x15 0x03: a TLS alert, the answer of a TLS listener to a request in the clear.
            what = "a TLS alert" if head[:2] == b"\x15\x03" else "no Kafka response"
            raise _Refused("protocol", f"{what} came back from {self.address}: is KAFKA_SECURITY_PROTOCOL "
                           "right for this listener (a TLS listener wants SSL or SASL_SSL)?")
        body = io.BytesIO(self._read(size))
        request.parse_response_header(body)
        return request.RESPONSE_TYPE.decode(body)

    def _settimeout(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the probe ran out of time")
        self.sock.settimeout(remaining)

    def _read(self, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            self._settimeout()
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return bytes(data)


def tls_context(settings: KafkaSettings) -> ssl.SSLContext:
    """The checks a client of the service makes: the CA (or the system's), the host name."""
    context = ssl.create_default_context(cafile=settings.ssl_cafile or None)
    if settings.ssl_certfile:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    return context


def probe(kafka: ServiceKafka, timeout_s: float = PROBE_TIMEOUT_S) -> KafkaVerdict:
    """One pass over the first bootstrap server that accepts a TCP connection."""
    deadline = time.monotonic() + timeout_s
    verdict = KafkaVerdict("unreachable", "no bootstrap server", time.monotonic())
    for address in kafka.settings.bootstrap_servers.split(","):
        address = address.strip()
        host, _, port = address.rpartition(":")
        try:
            sock = socket.create_connection((host, int(port)), timeout=max(0.1, deadline - time.monotonic()))
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            verdict = KafkaVerdict("unreachable", f"Kafka is not reachable at {address}: {reason}; is the "
                                   "broker up, and KAFKA_BOOTSTRAP_SERVERS right?", time.monotonic())
            continue
        with sock:
            return _scrubbed(kafka.settings, _walk(kafka, sock, host, address, deadline))
    return verdict


def _walk(kafka: ServiceKafka, sock: socket.socket, host: str, address: str, deadline: float) -> KafkaVerdict:
    settings = kafka.settings
    step = "connecting"
    try:
        if settings.uses_tls:
            step = "the TLS handshake"
            sock = _tls(settings, sock, host, address, deadline)
        wire = _Wire(sock, address, deadline)
        if settings.uses_sasl:
            step = "SASL authentication"
            _authenticate(wire, settings, address)
        step = "the first requests"
        if kafka.topic:
            _authorized(wire, kafka)
        elif kafka.describe:
            _described(wire, kafka)
    except _Refused as refused:
        return KafkaVerdict(refused.problem, refused.reason, time.monotonic())
    except (OSError, EOFError, ValueError) as exc:
        hint = "is KAFKA_SECURITY_PROTOCOL right for this listener?"
        if isinstance(exc, TimeoutError):
            hint = "the broker did not answer in time"
        return KafkaVerdict("unreachable" if isinstance(exc, TimeoutError) else "protocol",
                            f"Kafka at {address} ({settings.security_protocol}) broke off {step}: "
                            f"{exc.__class__.__name__}; {hint}", time.monotonic())
    return KafkaVerdict(checked_at=time.monotonic())


def _tls(settings: KafkaSettings, sock: socket.socket, host: str, address: str,
         deadline: float) -> ssl.SSLSocket:
    try:
        context = tls_context(settings)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise _Refused("configuration", f"the TLS settings cannot be loaded ({exc.__class__.__name__}: "
                       f"{reason}); check KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"
                       ) from None
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        where = f"KAFKA_SSL_CAFILE={settings.ssl_cafile}" if settings.ssl_cafile else "the system's CAs"
        raise _Refused("tls", f"Kafka's TLS certificate at {address} is not trusted: {exc.verify_message} "
                       f"(checked against {where}); set KAFKA_SSL_CAFILE to the CA that signed the broker's "
                       "certificate, and connect by a name the certificate holds") from None
    except ssl.SSLError as exc:
        raise _Refused("tls", f"the TLS handshake with Kafka at {address} failed: {exc.reason or exc}; is it "
                       "a TLS listener (KAFKA_SECURITY_PROTOCOL)?") from None


def _authenticate(wire: _Wire, settings: KafkaSettings, address: str) -> None:
    mechanism = settings.sasl_mechanism
    handshake = wire.call(SaslHandShakeRequest[1](mechanism))
    if handshake.error_code == UNSUPPORTED_SASL_MECHANISM:
        raise _Refused("authentication", f"Kafka at {address} does not offer {mechanism} (it offers "
                       f"{', '.join(handshake.enabled_mechanisms) or 'no SASL'}); set KAFKA_SASL_MECHANISM")
    if handshake.error_code:
        raise _Refused("authentication", f"the SASL handshake with Kafka at {address} failed (error "
                       f"{handshake.error_code}); is KAFKA_SECURITY_PROTOCOL right for this listener?")
    if mechanism == "PLAIN":
        tokens = iter([f"\0{settings.sasl_username}\0{settings.sasl_password}".encode()])
        _exchange(wire, settings, address, lambda _: next(tokens, None))
        return
    scram = ScramClient(settings.sasl_username, settings.sasl_password, mechanism)
    messages = iter([lambda _: scram.first_message().encode(),
                     lambda server_first: (scram.process_server_first_message(server_first.decode()),
                                           scram.final_message().encode())[1],
                     lambda server_final: scram.process_server_final_message(server_final.decode())])
    _exchange(wire, settings, address, lambda answer: next(messages)(answer))


def _exchange(wire: _Wire, settings: KafkaSettings, address: str,
              next_token: Callable[[bytes | None], bytes | None]) -> None:
    """SaslAuthenticate round trips (KIP-152) until the mechanism has nothing more to send."""
    token, answer = next_token(None), None
    while token is not None:
        response = wire.call(SaslAuthenticateRequest[1](token))
        if response.error_code:  # SASL_AUTHENTICATION_FAILED, with the broker's words
            said = response.error_message or "refused"
            raise _Refused("authentication", f"Kafka at {address} refused {settings.sasl_mechanism} "
                           f"authentication as {settings.sasl_username}: {said}; check "
                           "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)")
        answer = response.sasl_auth_bytes
        token = next_token(answer)


def _authorized(wire: _Wire, kafka: ServiceKafka) -> None:
    # v5: it can ask the broker not to create a missing topic, which a probe must never do.
    metadata = wire.call(MetadataRequest[5](topics=[kafka.topic, kafka.dlq_topic],
                                            allow_auto_topic_creation=False))
    partitions = {}
    for error_code, topic, _internal, topic_partitions in metadata.topics:
        setting, verb = ("KAFKA_TOPIC", "read") if topic == kafka.topic else ("KAFKA_DLQ_TOPIC", "write")
        if error_code == TOPIC_DENIED:
            raise _Refused("authorization", f"Kafka's ACLs do not let {kafka.who} {verb} topic {topic} "
                           f"({setting})")
        if error_code == UNKNOWN_TOPIC_OR_PARTITION:
            raise _Refused("topic", f"topic {topic} ({setting}) does not exist on Kafka; `make infra` "
                           "creates the service's topics")
        partitions[topic] = {partition: leader for _e, partition, leader, *_ in topic_partitions}
    _may_read(wire, kafka, partitions.get(kafka.topic, {}), metadata.brokers)
    coordinator = wire.call(GroupCoordinatorRequest[0](kafka.group))  # the version the consumer sends
    if coordinator.error_code == GROUP_DENIED:
        raise _Refused("authorization", f"Kafka's ACLs do not let {kafka.who} use consumer group "
                       f"{kafka.group} (KAFKA_GROUP_ID)")


def _described(wire: _Wire, kafka: ServiceKafka) -> None:
    metadata = wire.call(MetadataRequest[5](topics=list(kafka.describe), allow_auto_topic_creation=False))
    for error_code, topic, *_ in metadata.topics:
        if error_code == TOPIC_DENIED:
            raise _Refused("authorization", f"Kafka's ACLs do not let {kafka.who} use topic {topic}")


def _may_read(wire: _Wire, kafka: ServiceKafka, leaders: dict[int, int], brokers: list) -> None:
    """A fetch at the end of one partition: READ is checked, no record comes back. Only when the
    broker we talk to leads a partition (a fetch elsewhere is answered NOT_LEADER)."""
    if not leaders or len(brokers) != 1:
        return
    partition = min(leaders)
    offsets = wire.call(OffsetRequest[1](-1, [(kafka.topic, [(partition, LATEST_OFFSET)])]))
    _topic, ((_partition, error_code, _timestamp, end),) = offsets.topics[0]
    if error_code:
        return
    fetched = wire.call(FetchRequest[4](-1, 0, 0, 1, 0, [(kafka.topic, [(partition, end, 1)])]))
    if fetched.topics[0][1][0][1] == TOPIC_DENIED:
        raise _Refused("authorization", f"Kafka's ACLs do not let {kafka.who} read topic {kafka.topic} "
                       "(KAFKA_TOPIC)")


def refusal(settings: KafkaSettings, topics: tuple[str, ...] = ()) -> str | None:
    """Why Kafka refuses these settings (TLS, SASL, no ACL on one of `topics`), for a command that
    could not connect, or None: kafka-python would only say that no broker is available."""
    verdict = probe(ServiceKafka(settings, describe=topics))
    return verdict.reason if verdict.refused else None


def _scrubbed(settings: KafkaSettings, verdict: KafkaVerdict) -> KafkaVerdict:
    """The broker's and OpenSSL's words are quoted: should one ever hold the password, it goes."""
    if settings.sasl_password and settings.sasl_password in verdict.reason:
        return KafkaVerdict(verdict.problem, verdict.reason.replace(settings.sasl_password, "***"),
                            verdict.checked_at)
    return verdict


class KafkaHealth:
    """The last verdict on Kafka in one process, shared by /readyz and the consumer."""

    def __init__(self, config: Mapping[str, Any], max_age_s: float = MAX_AGE_S) -> None:
        self._config = config
        self.max_age_s = max_age_s
        self._verdict: KafkaVerdict | None = None
        self._probing = threading.Lock()

    def check(self) -> KafkaVerdict:
        """A fresh verdict (the consumer's, before it connects); logged if it changed."""
        with self._probing:
            return self._probe()

    def verdict(self) -> KafkaVerdict:
        """The last verdict (for /readyz). The first call waits for a probe; later ones never do:
        a stale verdict is returned while a thread refreshes it."""
        current = self._verdict
        if current is None:
            with self._probing:  # concurrent first requests: one probe, which all then read
                return self._verdict or self._probe()
        if time.monotonic() - current.checked_at > self.max_age_s and not self._probing.locked():
            threading.Thread(target=self._refresh, name="kafka-probe", daemon=True).start()
        return current

    def _refresh(self) -> None:
        if self._probing.acquire(blocking=False):  # another refresh or check is on it already
            try:
                self._probe()
            finally:
                self._probing.release()

    def _probe(self) -> KafkaVerdict:
        try:
            verdict = probe(ServiceKafka.from_config(self._config))
        except ValueError as exc:  # KafkaSettings.check: a setting is wrong; its message names it
            verdict = KafkaVerdict("configuration", str(exc), time.monotonic())
        self._record(verdict)
        return verdict

    def report(self, problem: str, reason: str) -> KafkaVerdict:
        """A refusal the consumer met on its own (an ACL changed while it ran)."""
        verdict = KafkaVerdict(problem, reason, time.monotonic())
        self._record(verdict)
        return verdict

    def _record(self, verdict: KafkaVerdict) -> None:
        previous, self._verdict = self._verdict, verdict
        if verdict.ok:
            if previous is not None and not previous.ok:
                log.warning("Kafka accepts this service again (it was: %s)", previous.problem)
        elif previous is None or (previous.problem, previous.reason) != (verdict.problem, verdict.reason):
            log.error("Kafka: %s", verdict.reason)


def kafka_health(app: Any) -> KafkaHealth:
    """The app's KafkaHealth, made on first use (cheap: no connection until asked)."""
    health = app.extensions.get("kafka_health")
    if health is None:
        health = app.extensions.setdefault("kafka_health", KafkaHealth(app.config))
    return health
