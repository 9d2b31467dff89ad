"""No secret in sight: the service's start-up, ingest, dead letters and replays, error answers, a
PostgreSQL outage and Kafka refusing a wrong password, all run with known passwords, and every log
line (the service's, the broker's, PostgreSQL's), every answer, every command's output and every
command line on the machine is searched for them."""

import re
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from app import create_app
from config import Config, TestConfig
from harness.kafka import all_committed, read_all
from harness.postgres import database_outage
from harness.security import SaslUser, local_ca, order_service_home, secure_kafka
from harness.service import Service, service_env
from harness.waiting import wait_until
from tests.helpers import stored_uids

pytestmark = pytest.mark.slow

ROLES = ("service", "producer", "operator")
WRONG_PASSWORD = "a-wrong-password-0123456789"
PAGES = ("/readyz", "/healthz", "/metrics", "/openapi.json", "/", "/?id=unknown", "/order/%00",
         "/order/unknown-id", "/orders?limit=abc", "/orders?before=bogus", "/no-such-page")


def leaks(text: str, secret: str, names: set[str]) -> bool:
    """Whether `text` shows `secret`: anywhere when it is distinctive; else where a password stands
    (a URL's user:password@, a DSN's password=), since a short one like `orders` is also a name."""
    if len(secret) >= 8 and not any(secret in name for name in names):
        return secret in text
    return bool(re.search(rf"(:{re.escape(secret)}@|password\s*[=:]\s*['\"]?{re.escape(secret)}\b)", text,
                          re.IGNORECASE))


class Tail:
    """What a log file gains from now on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = path.stat().st_size if path.exists() else 0

    def read(self) -> str:
        if not self.path.exists():
            return ""
        with self.path.open("rb") as file:
            file.seek(self.start)
            return file.read().decode(errors="replace")


def command_lines() -> str:
    """Every process's command line on this machine, as `ps` shows them to any user."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue  # gone meanwhile
    return "\n".join(lines)


def test_no_secret_shows_in_a_log_an_answer_or_a_command_line(ingest_app, database_url, topics,
                                                              kafka_bootstrap, tmp_path):
    logs = order_service_home() / "logs"
    broker_log, postgres_log = Tail(logs / "kafka.log"), Tail(logs / "postgres.log")
    seen: list[str] = []

    def answer(service: Service, path: str) -> int:
        status, headers, body = service.get(path)
        seen.extend([str(headers), body.decode(errors="replace")])
        return status

    with secure_kafka(kafka_bootstrap, topics, tmp_path) as secure:
        users = {role: secure.add_user(role) for role in ROLES}
        secure.grant([grant for role in ROLES for grant in secure.role_grants(role)])
        wrong_password = tmp_path / "wrong-password"
        wrong_password.write_text(WRONG_PASSWORD + "\n")
        database = make_url(database_url)
        secrets = {user.password for user in users.values()} | {
            WRONG_PASSWORD, database.password, make_url(Config.MIGRATION_DATABASE_URL).password}
        names = {user.name for user in users.values()} | {database.username, database.database, topics.orders,
                                                          topics.dlq, topics.group, "order-service", "orders"}
        # The service's database password from a file, the URL without it, and TLS verified.
        password_file = tmp_path / "database-password"
        password_file.write_text(database.password + "\n")
        url = database.set(password=None).update_query_dict(
            {"sslmode": "verify-full", "sslrootcert": str(local_ca())}).render_as_string()
        env = service_env(url, topics, DATABASE_PASSWORD_FILE=str(password_file),
                          **users["service"].env(secure.sasl))
        service = Service(env, tmp_path / "service.log").start()
        refused = Service({**env, "WEB_CONCURRENCY": "1", "KAFKA_SASL_PASSWORD_FILE": str(wrong_password)},
                          tmp_path / "refused.log").start()
        try:
            def flask(user, *args: str) -> None:
                app = create_app(TestConfig, {**ingest_app.config, **user.config(secure.sasl)})
                result = app.test_cli_runner().invoke(args=list(args))
                seen.append(result.output + repr(result.exception or ""))

            # Ingest, dead letters, the operator's tools.
            flask(users["producer"], "seed-orders", "--count", "40", "--invalid-ratio", "0.25", "--seed",
                  "81", "--quiet")
            wait_until(lambda: all_committed(topics), 60, "the service consumed the seeded orders")
            flask(users["operator"], "dlq", "stats")
            flask(users["operator"], "dlq", "show", "--limit", "3")
            flask(users["operator"], "dlq", "replay", "--dry-run")
            assert stored_uids(ingest_app) and read_all(topics.bootstrap, topics.dlq)
            # Error answers and every page.
            for path in PAGES:
                answer(service, path)
            # A PostgreSQL outage, while orders keep coming.
            with database_outage(database_url):
                wait_until(lambda: answer(service, "/readyz") == 503, 30, "not ready without PostgreSQL")
                flask(users["producer"], "seed-orders", "--count", "10", "--seed", "82", "--quiet")
                wait_until(lambda: "consumer waiting" in service.log(), 30,
                           "the consumer waits the outage out")
            wait_until(lambda: all_committed(topics), 60, "the service caught up after the outage")
            # Kafka refusing a wrong password: in the log and /readyz, and in a command's error.
            wait_until(lambda: "refused SCRAM-SHA-512 authentication" in refused.log(), 30,
                       "the refusal is logged")
            answer(refused, "/readyz")
            flask(SaslUser(users["operator"].name, WRONG_PASSWORD, wrong_password), "dlq", "stats")
            seen.append(command_lines())
        finally:
            service.kill()
            refused.kill()
        seen.extend([service.log(), refused.log(), broker_log.read(), postgres_log.read()])

    # Indexes only: the message must not show the secrets either.
    places = sorted({index for secret in secrets for index, text in enumerate(seen)
                     if leaks(text, secret, names)})
    assert not places, f"a secret shows in what was seen at indexes {places}"
    assert "authentication" in "\n".join(seen)  # the refusal was seen, and said why
