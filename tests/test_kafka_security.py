"""Kafka over the local broker's SASL_SSL listener (SCRAM-SHA-512, TLS from the local CA, ACLs):
the whole path with each role's least privilege, and the three ways a deployment gets it wrong
(a wrong password, an untrusted certificate, a missing ACL), each one clear error in the log and
in /readyz, waited out with backoff, and recovered from once fixed.

The users are the test's own, with exactly the ACLs `make infra` gives each role
(devstack/kafka_security.py); the listener, its CA and make infra's own users are found where
`make infra` put them (harness/security.py)."""

import json
import re
import subprocess

import pytest
from kafka import TopicPartition
from kafka.errors import TopicAuthorizationFailedError

from app import create_app
from app.kafka_clients import KafkaSettings, new_admin, new_consumer, new_producer
from app.seed import OrderFactory, encode
from config import Config, TestConfig
from devstack import kafka_security
from devstack.kafka import Kafka
from devstack.settings import Settings
from harness.kafka import admin, all_committed, end_offsets, produce, read_all
from harness.security import local_ca, order_service_home, rogue_ca, sasl_settings, secure_kafka
from harness.service import Service, service_env
from harness.waiting import wait_until
from tests.helpers import stored_uids

pytestmark = pytest.mark.slow

ROLES = ("service", "producer", "operator")
HEALTH_ERROR = re.compile(r"ERROR \[\d+ [^\]]*\] app\.kafka_health: Kafka: (.*)")


@pytest.fixture
def secure(kafka_bootstrap, topics, tmp_path):
    with secure_kafka(kafka_bootstrap, topics, tmp_path) as made:
        yield made


def cli(ingest_app, user, sasl, *args: str):
    """A `flask` command of the service as `user` on the SASL_SSL listener."""
    app = create_app(TestConfig, {**ingest_app.config, **user.config(sasl)})
    return app.test_cli_runner().invoke(args=list(args))


def readyz(service: Service) -> dict:
    return json.loads(service.get("/readyz")[2] or b"{}")


def settings_of(user, sasl) -> KafkaSettings:
    return KafkaSettings.from_config({**vars(Config), **user.config(sasl)})


def test_the_whole_path_over_sasl_ssl_with_least_privilege(ingest_app, database_url, topics, secure,
                                                           services):
    service_user, producer, operator = every_role(secure)

    # The producer's user seeds valid and invalid orders.
    seeded = cli(ingest_app, producer, secure.sasl, "seed-orders", "--count", "60", "--invalid-ratio", "0.25",
                 "--seed", "41", "--quiet")
    assert seeded.exit_code == 0, seeded.output
    valid = int(re.search(r"(\d+) valid", seeded.output)[1])
    invalid = int(re.search(r"(\d+) invalid", seeded.output)[1])
    assert valid and invalid

    # The service consumes, stores and dead-letters as its own user.
    service = services(service_env(database_url, topics, **service_user.env(secure.sasl)))
    wait_until(lambda: all_committed(topics), 60, "the service consumed the topic over SASL_SSL")
    assert len(stored_uids(ingest_app)) == valid
    assert len(read_all(topics.bootstrap, topics.dlq)) == invalid
    ready = wait_until(lambda: (answer := readyz(service))["consumer"]["state"] == "in group" and answer, 30,
                       "the answering worker's consumer is in its group")
    assert ready["checks"]["kafka"] == {"ok": True} and ready["consumer"]["restarts"] == 0

    # The operator's user reads the dead letters and replays them into the orders topic.
    stats = cli(ingest_app, operator, secure.sasl, "dlq", "stats", "--json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)["source_records"] == invalid
    before = sum(end_offsets(topics.bootstrap, topics.orders).values())
    replayed = cli(ingest_app, operator, secure.sasl, "dlq", "replay")
    assert replayed.exit_code == 0, replayed.output
    assert f"replayed {invalid} of {invalid}" in replayed.output
    assert sum(end_offsets(topics.bootstrap, topics.orders).values()) == before + invalid
    # Still invalid: the service dead-letters them again.
    wait_until(lambda: len(read_all(topics.bootstrap, topics.dlq)) == 2 * invalid, 60,
               "the replayed records were dead-lettered again")


def every_role(secure):
    """The service's, the producer's and the operator's users, each with its role's ACLs."""
    users = [secure.add_user(role) for role in ROLES]
    secure.grant([grant for role in ROLES for grant in secure.role_grants(role)])
    return users


def test_each_user_can_do_only_what_its_role_needs(topics, secure):
    service_user, producer, operator = every_role(secure)
    for user in (producer, operator):  # only the service reads the orders
        with pytest.raises(TopicAuthorizationFailedError):
            poll_once(settings_of(user, secure.sasl), topics.orders)
    with pytest.raises(TopicAuthorizationFailedError):  # the service cannot forge an order
        send_once(settings_of(service_user, secure.sasl), topics.orders)
    with pytest.raises(TopicAuthorizationFailedError):  # nor read the dead letters it writes
        poll_once(settings_of(service_user, secure.sasl), topics.dlq)
    # No forged dead letter for replay to send on: the producer may not even see the topic.
    denied = TopicAuthorizationFailedError.errno
    assert describe_error(settings_of(producer, secure.sasl), topics.dlq) == denied


def poll_once(settings: KafkaSettings, topic: str) -> None:
    consumer = new_consumer(settings, enable_auto_commit=False, request_timeout_ms=15000)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        for _ in range(20):
            consumer.poll(timeout_ms=500)
    finally:
        consumer.close()


def send_once(settings: KafkaSettings, topic: str) -> None:
    producer = new_producer(settings, acks="all", max_block_ms=15000)
    try:
        producer.send(topic, key=b"forged", value=b"{}").get(timeout=15)
    finally:
        producer.close()


def describe_error(settings: KafkaSettings, topic: str) -> int:
    """The error code of describing `topic` as `settings`' user (29: not authorized)."""
    client = new_admin(settings, request_timeout_ms=15000)
    try:
        return client.describe_topics([topic])[0]["error_code"]
    finally:
        client.close()


def test_make_infra_gave_its_users_their_roles_and_the_producer_cannot_read_orders(kafka_bootstrap):
    """The users `make infra` made for the configured topics: their ACLs are the roles' and no
    more, and the producer's password (from its file) works but reads nothing."""
    sasl = sasl_settings()
    assert sasl["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and sasl["KAFKA_SSL_CAFILE"] == str(local_ca())
    client = admin(kafka_bootstrap)
    try:
        expected = {
            kafka_security.SERVICE: kafka_security.service_grants(
                kafka_security.SERVICE, Config.KAFKA_TOPIC, Config.KAFKA_DLQ_TOPIC, Config.KAFKA_GROUP_ID),
            kafka_security.PRODUCER: kafka_security.producer_grants(kafka_security.PRODUCER,
                                                                    Config.KAFKA_TOPIC),
            kafka_security.OPERATOR: kafka_security.operator_grants(
                kafka_security.OPERATOR, Config.KAFKA_TOPIC, Config.KAFKA_DLQ_TOPIC, Config.KAFKA_GROUP_ID),
        }
        for user, grants in expected.items():
            assert kafka_security.acls_of(client, user) == set(grants), user
    finally:
        client.close()
    password_file = order_service_home() / "kafka" / "sasl" / f"{kafka_security.PRODUCER}.password"
    producer = KafkaSettings.from_config({**vars(Config), **sasl, "KAFKA_SASL_PASSWORD_FILE": "",
                                          "KAFKA_SASL_USERNAME": kafka_security.PRODUCER,
                                          "KAFKA_SASL_PASSWORD": password_file.read_text().strip()})
    with pytest.raises(TopicAuthorizationFailedError):
        poll_once(producer, Config.KAFKA_TOPIC)


def test_kafkas_own_tools_connect_with_client_sasl_properties():
    """The properties file `make infra` writes, given to one of Kafka's Java tools: it
    authenticates over TLS (else SSLHandshakeException or SaslAuthenticationException), and the
    broker then applies the service user's ACLs (it may read the topic, not its configuration)."""
    kafka_dir = order_service_home() / "kafka"
    libs = Kafka(Settings.from_env()).libs()  # the broker's own jars, as `make infra` fetched them
    run = subprocess.run(
        ["java", "-cp", str(libs / "*"), "kafka.admin.ConfigCommand",
         "--bootstrap-server", sasl_settings()["KAFKA_BOOTSTRAP_SERVERS"],
         "--command-config", str(kafka_dir / "client-sasl.properties"),
         "--describe", "--entity-type", "topics", "--entity-name", Config.KAFKA_TOPIC],
        capture_output=True, text=True, timeout=120)
    said = run.stdout + run.stderr
    assert "TopicAuthorizationException" in said, said[-2000:]
    assert "SaslAuthenticationException" not in said and "SSLHandshakeException" not in said


def wrong_password(secure, tmp_path):
    user = secure.add_user("service", broker_password="not-what-the-service-has")
    secure.grant(secure.role_grants("service"))
    words = [f"refused SCRAM-SHA-512 authentication as {user.name}", "KAFKA_SASL_PASSWORD"]
    return {}, "authentication", words, lambda: secure.set_password("service", user.password)


def untrusted_certificate(secure, tmp_path):
    secure.add_user("service")
    secure.grant(secure.role_grants("service"))
    cafile = tmp_path / "ca.crt"
    cafile.write_bytes(rogue_ca(tmp_path / "rogue").read_bytes())
    return ({"KAFKA_SSL_CAFILE": str(cafile)}, "tls", ["is not trusted", f"KAFKA_SSL_CAFILE={cafile}"],
            lambda: cafile.write_bytes(local_ca().read_bytes()))


def denied_acl(secure, tmp_path):
    secure.add_user("service")
    grants = secure.role_grants("service")
    read_orders = [g for g in grants if g.operation == kafka_security.ACLOperation.READ
                   and g.name == secure.topics.orders]
    secure.grant([g for g in grants if g not in read_orders])
    return ({}, "authorization", [f"read topic {secure.topics.orders} (KAFKA_TOPIC)"],
            lambda: secure.grant(read_orders))


@pytest.mark.parametrize("breakage", [wrong_password, untrusted_certificate, denied_acl])
def test_a_refusal_is_one_clear_error_waited_out_and_recovered_from(ingest_app, database_url, topics, secure,
                                                                    services, tmp_path, breakage):
    overrides, problem, words, fix = breakage(secure, tmp_path)
    env = service_env(database_url, topics, WEB_CONCURRENCY="1", CONSUMER_MAX_BACKOFF_S="2",
                      **secure.users["service"].env(secure.sasl, **overrides))
    service = services(env)
    wait_until(lambda: readyz(service).get("consumer", {}).get("waiting_s", 0) >= 5, 30,
               "the consumer has waited the refusal out for 5 s")
    ready = readyz(service)
    assert ready["checks"]["kafka"]["ok"] is False and ready["checks"]["kafka"]["problem"] == problem
    for word in words:
        assert word in ready["checks"]["kafka"]["error"]
    # Backoff: the attempts follow the capped exponential schedule (at most ~9 in 5 s, where a
    # loop would make dozens), and none is a restart (each would rebalance the group).
    assert ready["consumer"]["retries"] <= 12 and ready["consumer"]["restarts"] == 0
    assert ready["status"] == "ready"  # reads do not need Kafka
    errors = HEALTH_ERROR.findall(service.log())
    assert errors == [ready["checks"]["kafka"]["error"]], "one clear error, once"
    assert "Traceback" not in service.log() and "kafka.conn" not in service.log()

    fix()
    wait_until(lambda: readyz(service)["checks"]["kafka"] == {"ok": True}, 30,
               "Kafka accepts the service again")
    wait_until(lambda: readyz(service)["consumer"]["state"] == "in group", 30,
               "the consumer joined its group")
    assert "Kafka accepts this service again" in service.log()
    orders = list(OrderFactory(seed=43).orders(20))
    produce(topics.bootstrap, topics.orders,
            [(order["order_uid"].encode(), encode(order)) for order in orders])
    wait_until(lambda: all_committed(topics), 60, "the recovered service consumed the topic")
    assert sorted(stored_uids(ingest_app)) == sorted(order["order_uid"] for order in orders)
