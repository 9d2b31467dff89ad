"""The local broker's second listener: SASL_SSL with SCRAM-SHA-512 on KAFKA_SASL_PORT, behind
KRaft's StandardAuthorizer, with one user per role and only the ACLs that role needs
(devstack/kafka.py runs it on every `make infra`).

`broker_key_store` (before the broker starts) writes the broker's PEM key store, signed by the local
CA (devstack.certs). `set_up_users` (once it is up, over the loopback PLAINTEXT listener, whose anonymous
principal is the broker's own super user) creates the SCRAM users, grants the ACLs and writes each
user's client settings in $ORDER_SERVICE_HOME/kafka: `client-sasl.properties` (Kafka's CLI tools:
--command-config, --consumer.config, --producer.config) and `client-sasl.env` (this service's
KAFKA_* variables) for the service's user, `client-sasl-producer.*` and `client-sasl-operator.*` for
the others. Passwords are generated once into `sasl/<user>.password` (0600) and never leave files:
not on a command line, not in a log line.
"""

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.admin.acl_resource import ACLResourcePatternType
from kafka.protocol.api import Request, Response
from kafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from config import private_dir
from devstack.certs import ensure_ca, ensure_server_certificate, write_file

SASL_MECHANISM = "SCRAM-SHA-512"
# Kafka's SCRAM mechanisms by their id in the protocol, and the hash each uses.
_MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
SCRAM_ITERATIONS = 8192
# The development users, by role: the service itself, a producer of orders, and the operator who
# runs `flask dlq` (reading dead letters, replaying them into the orders topic).
SERVICE, PRODUCER, OPERATOR = "order-service", "order-producer", "order-operator"
CLIENT_FILE_STEMS = {SERVICE: "client-sasl", PRODUCER: "client-sasl-producer",
                     OPERATOR: "client-sasl-operator"}
# `flask dlq replay` remembers its work in the group KAFKA_GROUP_ID + this (app/dlq/replay.py).
REPLAY_GROUP_SUFFIX = "-dlq-replay"


# --- TLS ----------------------------------------------------------------------------------------

def broker_key_store(kafka_dir: Path, ca_dir: Path, hosts: list[str]) -> Path:
    """The broker's PEM key store (its key and certificate, for `ssl.keystore.type=PEM`) for
    `hosts`, signed by the CA in `ca_dir`; rewritten only when the certificate is (re)issued."""
    tls_dir = private_dir(kafka_dir / "tls")
    ca = ensure_ca(ca_dir)
    key, cert, store = tls_dir / "broker.key", tls_dir / "broker.crt", tls_dir / "broker-keystore.pem"
    if ensure_server_certificate(ca, key, cert, hosts) or not store.exists():
        write_file(store, key.read_bytes() + cert.read_bytes(), 0o600)
    return store


# --- SCRAM users (DescribeUserScramCredentials / AlterUserScramCredentials, KIP-554) -------------
# kafka-python has no admin call for them; these are the protocol's v0 messages.

class DescribeUserScramCredentialsResponse_v0(Response):  # noqa: N801 (kafka-python's naming)
    API_KEY, API_VERSION = 50, 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32), ("error_code", Int16), ("error_message", CompactString("utf-8")),
        ("results", CompactArray(
            ("user", CompactString("utf-8")), ("error_code", Int16),
            ("error_message", CompactString("utf-8")),
            ("credential_infos", CompactArray(("mechanism", Int8), ("iterations", Int32),
                                              ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class DescribeUserScramCredentialsRequest_v0(Request):  # noqa: N801
    API_KEY, API_VERSION, FLEXIBLE_VERSION = 50, 0, True
    RESPONSE_TYPE = DescribeUserScramCredentialsResponse_v0
    SCHEMA = Schema(("users", CompactArray(("name", CompactString("utf-8")), ("tags", TaggedFields))),
                    ("tags", TaggedFields))


class AlterUserScramCredentialsResponse_v0(Response):  # noqa: N801
    API_KEY, API_VERSION = 51, 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", CompactArray(("user", CompactString("utf-8")), ("error_code", Int16),
                                 ("error_message", CompactString("utf-8")), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest_v0(Request):  # noqa: N801
    API_KEY, API_VERSION, FLEXIBLE_VERSION = 51, 0, True
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                   ("tags", TaggedFields))),
        ("upsertions", CompactArray(
            ("name", CompactString("utf-8")), ("mechanism", Int8), ("iterations", Int32),
            ("salt", CompactBytes), ("salted_password", CompactBytes), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


def _call(admin: KafkaAdminClient, request: Request) -> Response:
    future = admin._send_request_to_node(admin._client.least_loaded_node(), request)
    admin._wait_for_futures([future])
    return future.value


def scram_users(admin: KafkaAdminClient) -> set[str]:
    """The users that have SCRAM credentials on the cluster."""
    response = _call(admin, DescribeUserScramCredentialsRequest_v0(users=None, tags={}))
    if response.error_code:
        raise RuntimeError(f"describing SCRAM users failed: error {response.error_code} "
                           f"{response.error_message}")
    return {user for user, error_code, *_ in response.results if error_code == 0}


def _alter(admin: KafkaAdminClient, deletions: list, upsertions: list) -> None:
    request = AlterUserScramCredentialsRequest_v0(deletions=deletions, upsertions=upsertions, tags={})
    response = _call(admin, request)
    failed = [f"{user}: error {code} {message}" for user, code, message, _ in response.results if code]
    if failed:
        raise RuntimeError(f"altering SCRAM credentials failed: {'; '.join(failed)}")


def set_scram_password(admin: KafkaAdminClient, user: str, password: str,
                       mechanism: str = SASL_MECHANISM) -> None:
    """Create the user, or change its password. Only the salted password crosses the wire (as the
    Java admin client sends it), never the password."""
    mechanism_id, digest = _MECHANISMS[mechanism]
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, SCRAM_ITERATIONS)
    _alter(admin, [], [(user, mechanism_id, SCRAM_ITERATIONS, salt, salted, {})])


def delete_scram_user(admin: KafkaAdminClient, user: str, mechanism: str = SASL_MECHANISM) -> None:
    _alter(admin, [(user, _MECHANISMS[mechanism][0], {})], [])


# --- ACLs ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grant:
    """One ALLOW rule: `user` may do `operation` on the topic or group `name`."""

    user: str
    operation: ACLOperation
    resource: ResourceType
    name: str

    def acl(self) -> ACL:
        return ACL(f"User:{self.user}", "*", self.operation, ACLPermissionType.ALLOW,
                   ResourcePattern(self.resource, self.name, ACLResourcePatternType.LITERAL))


def service_grants(user: str, topic: str, dlq_topic: str, group: str) -> list[Grant]:
    """The service's consumer reads `topic` in `group`; its dead-letter producer writes `dlq_topic`.
    (READ and WRITE imply DESCRIBE.) Nothing else: it cannot write orders nor create topics."""
    return [Grant(user, ACLOperation.READ, ResourceType.TOPIC, topic),
            Grant(user, ACLOperation.READ, ResourceType.GROUP, group),
            Grant(user, ACLOperation.WRITE, ResourceType.TOPIC, dlq_topic)]


def producer_grants(user: str, topic: str) -> list[Grant]:
    """A producer of orders writes `topic`, and may read nothing."""
    return [Grant(user, ACLOperation.WRITE, ResourceType.TOPIC, topic)]


def operator_grants(user: str, topic: str, dlq_topic: str, group: str) -> list[Grant]:
    """`flask dlq`: reads the dead letters, replays them into `topic`, remembers in its own group."""
    return [Grant(user, ACLOperation.READ, ResourceType.TOPIC, dlq_topic),
            Grant(user, ACLOperation.WRITE, ResourceType.TOPIC, topic),
            Grant(user, ACLOperation.READ, ResourceType.GROUP, group + REPLAY_GROUP_SUFFIX)]


def grant(admin: KafkaAdminClient, grants: Iterable[Grant]) -> None:
    """Create the ACLs (an ACL that exists already is left as it is)."""
    result = admin.create_acls([g.acl() for g in grants])
    if result["failed"]:
        raise RuntimeError(f"creating ACLs failed: {[(str(acl), error) for acl, error in result['failed']]}")


def revoke(admin: KafkaAdminClient, grants: Iterable[Grant]) -> None:
    filters = [ACLFilter(g.acl().principal, "*", g.operation, ACLPermissionType.ALLOW,
                         ResourcePatternFilter(g.resource, g.name, ACLResourcePatternType.LITERAL))
               for g in grants]
    admin.delete_acls(filters)


def acls_of(admin: KafkaAdminClient, user: str) -> set[Grant]:
    """Every LITERAL ALLOW rule of `user`, as Grants."""
    found, error = admin.describe_acls(ACLFilter(
        f"User:{user}", None, ACLOperation.ANY, ACLPermissionType.ANY,
        ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)))
    if error.errno:
        raise RuntimeError(f"describing the ACLs of {user} failed: {error}")
    return {Grant(user, acl.operation, acl.resource_pattern.resource_type, acl.resource_pattern.resource_name)
            for acl in found if acl.permission_type == ACLPermissionType.ALLOW}


# --- the users' settings ------------------------------------------------------------------------

def password_of(kafka_dir: Path, user: str) -> tuple[Path, str, bool]:
    """The user's password file, its password, and whether it was just created."""
    path = private_dir(kafka_dir / "sasl") / f"{user}.password"
    if path.exists():
        return path, path.read_text().strip(), False
    password = secrets.token_urlsafe(24)
    write_file(path, password.encode() + b"\n", 0o600)
    return path, password, True


def _jaas_quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_client_settings(kafka_dir: Path, user: str, password_file: Path, bootstrap: str,
                          cafile: Path) -> None:
    """`<stem>.properties` for Kafka's Java tools (the password inline: they read no other file)
    and `<stem>.env` for this service (the password by file), both 0600."""
    stem = CLIENT_FILE_STEMS[user]
    password = password_file.read_text().strip()
    properties = (
        f"# {user} on the local SASL_SSL listener (written by `make infra`)\n"
        f"bootstrap.servers={bootstrap}\n"
        "security.protocol=SASL_SSL\n"
        f"sasl.mechanism={SASL_MECHANISM}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f"username={_jaas_quoted(user)} password={_jaas_quoted(password)};\n"
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={cafile}\n"
    )
    env = (
        f"# {user} on the local SASL_SSL listener (written by `make infra`): `set -a; . {stem}.env; set +a`\n"
        f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}\n"
        "KAFKA_SECURITY_PROTOCOL=SASL_SSL\n"
        f"KAFKA_SASL_MECHANISM={SASL_MECHANISM}\n"
        f"KAFKA_SASL_USERNAME={user}\n"
        f"KAFKA_SASL_PASSWORD_FILE={password_file}\n"
        f"KAFKA_SSL_CAFILE={cafile}\n"
    )
    write_file(kafka_dir / f"{stem}.properties", properties.encode(), 0o600)
    write_file(kafka_dir / f"{stem}.env", env.encode(), 0o600)


def set_up_users(admin: KafkaAdminClient, kafka_dir: Path, sasl_bootstrap: str, cafile: Path, topic: str,
                 dlq_topic: str, group: str) -> list[str]:
    """The three development users with their passwords, ACLs and client files; returns what it
    did, for the progress lines. Passwords are set again on every run (the files are the truth)."""
    done = []
    existing = scram_users(admin)
    for user in (SERVICE, PRODUCER, OPERATOR):
        password_file, password, created = password_of(kafka_dir, user)
        set_scram_password(admin, user, password)
        if created or user not in existing:
            done.append(f"created SCRAM user {user} (password in {password_file})")
        write_client_settings(kafka_dir, user, password_file, sasl_bootstrap, cafile)
    grant(admin, [*service_grants(SERVICE, topic, dlq_topic, group), *producer_grants(PRODUCER, topic),
                  *operator_grants(OPERATOR, topic, dlq_topic, group)])
    return done

