"""Fixtures against the real services started by `make infra`: a PostgreSQL database and Kafka topics
of the tests' own, created here and dropped afterwards. The `orders` database is never touched.

No fixture pushes an app context behind a test's back: a test that calls the data layer directly
says so, with `with app.app_context():`, `tests.helpers.save`, or the `app_context` fixture."""

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from kafka.errors import NoBrokersAvailable

from app import create_app
from app.auth.policy import LIST, PII, READ
from app.cache import order_cache_for
from app.extensions import db
from app.ingest.consumer import OrderConsumer
from config import Config, TestConfig
from harness.kafka import Topics, admin, create_topics, delete_topics
from harness.oidc import Tokens
from harness.postgres import app_database, create_database, drop_database, empty_orders
from harness.service import Service
from tests.helpers import PageSession, contract_example


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database on the configured server, dropped at the end of the session."""
    try:
        url = create_database(Config.SQLALCHEMY_DATABASE_URI, prefix="orders_test")
    except psycopg2.OperationalError as exc:
        pytest.exit(f"PostgreSQL is not reachable: {exc}\n"
                    "Start it with `make infra` (or run the suite with `make test`).", returncode=3)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def app(database_url: str) -> Iterator[Flask]:
    """The app on the test database, migrated with `flask db upgrade`'s own code. Shared by the
    session: its cache is emptied by `empty_db`."""
    from flask_migrate import upgrade

    application = create_app(TestConfig, app_database(database_url))
    with application.app_context():
        upgrade()
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def empty_db(app: Flask, database_url: str) -> None:
    """The test database with no orders in it, and the session app's cache emptied with it (no
    test sees another's answers)."""
    empty_orders(database_url)
    order_cache_for(app).clear()


@pytest.fixture(scope="session")
def tokens() -> Tokens:
    """Access tokens from the real provider (client credentials): tokens("orders:read", ...)."""
    try:
        Tokens()(READ)
    except (requests.RequestException, RuntimeError) as exc:
        pytest.exit(f"The OpenID Connect provider at {Config.AUTH_ISSUER} gives no token: {exc}\n"
                    "Start it with `make infra` (or run the suite with `make test`).", returncode=3)
    return Tokens()


@pytest.fixture(scope="session")
def full_access(tokens: Tokens) -> Callable[[], dict[str, str]]:
    """Headers of a caller who may see everything (a fresh token with every scope), for the
    harness' Service and Edge."""
    return lambda: tokens.header(READ, LIST, PII)


@pytest.fixture(scope="session")
def page_session(app: Flask) -> PageSession:
    return PageSession(app)


@pytest.fixture(scope="session")
def authorize(tokens: Tokens, page_session: PageSession) -> Callable[[FlaskClient], FlaskClient]:
    """authorize(test_client): the client, as a caller who may see everything: a bearer token with
    every scope for the API, and the development user signed in (with orders:pii) for the page."""

    def authorize(test_client: FlaskClient) -> FlaskClient:
        test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {tokens(READ, LIST, PII)}"
        page_session.copy_into(test_client)
        return test_client

    return authorize


@pytest.fixture
def client(app: Flask, empty_db: None, authorize) -> FlaskClient:
    """The session app's test client, on an empty database and an empty cache, as a caller who may
    see everything (`authorize`). Tests of who may see what (test_auth.py) make their own."""
    return authorize(app.test_client())


@pytest.fixture
def app_context(app: Flask) -> Iterator[Flask]:
    """The session app's context, pushed for the whole test: for tests that call the data layer
    (save_orders, get_order, db.session) directly, and say so by asking for it."""
    with app.app_context():
        yield app


@pytest.fixture
def example_order() -> dict[str, Any]:
    """A fresh copy of the contract's canonical example, free to modify."""
    return contract_example()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    bootstrap = Config.KAFKA_BOOTSTRAP_SERVERS
    try:
        admin(bootstrap).close()
    except NoBrokersAvailable:
        pytest.exit(f"Kafka is not reachable at {bootstrap}. Start it with `make infra`.", returncode=3)
    return bootstrap


@pytest.fixture
def services(tmp_path, full_access) -> Iterator[Callable[..., Service]]:
    """Start the real service under gunicorn (`start(env, name)`), asked by a caller who may see
    everything; each is killed at the end."""
    started: list[Service] = []

    def start(env: dict[str, str], name: str = "service") -> Service:
        started.append(Service(env, tmp_path / f"{name}-{len(started)}.log", credentials=full_access).start())
        return started[-1]

    yield start
    for service in started:
        service.kill()


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    """An orders topic (6 partitions), a dead-letter topic and a group name, all new."""
    created = create_topics(kafka_bootstrap)
    yield created
    delete_topics(created)


def ingest_settings(database_url: str, topics: Topics, **extra: Any) -> dict[str, Any]:
    """The settings of an app that consumes `topics` into `database_url`, quickly; `extra` adds or
    overrides."""
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap,
        "KAFKA_TOPIC": topics.orders,
        "KAFKA_DLQ_TOPIC": topics.dlq,
        "KAFKA_GROUP_ID": topics.group,
        "CONSUMER_BATCH_WAIT_MS": 100,
        "CONSUMER_MAX_BACKOFF_S": 1,
        **extra,
    }


@pytest.fixture
def ingest_app(database_url: str, topics: Topics, empty_db: None) -> Flask:
    """An app on the (emptied) test database and this test's own topics and group."""
    return create_app(TestConfig, ingest_settings(database_url, topics))


@pytest.fixture
def runner(ingest_app: Flask) -> FlaskCliRunner:
    """The `flask` command runner of `ingest_app`: the commands (seed-orders, dlq) work on Kafka
    topics, so they run on this test's own, never on the configured ones."""
    return ingest_app.test_cli_runner()


class RunningConsumer:
    """An OrderConsumer on a thread of the test, as a gunicorn worker runs one."""

    def __init__(self, app: Flask) -> None:
        # The orders handed to on_stored (the cache write-through), as they came in.
        self.cached: list[dict] = []
        self.consumer = OrderConsumer(
            app, on_stored=lambda stored: self.cached.extend(served.order for served in stored))
        self.thread = threading.Thread(target=self.consumer.run, name="test-consumer")
        self.thread.start()

    def stop(self) -> None:
        self.consumer.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the consumer did not stop within 30 s"


@pytest.fixture
def run_consumer(ingest_app: Flask) -> Iterator[Callable[[], RunningConsumer]]:
    """Start consumers on this test's topics; all are stopped (and must stop) at the end."""
    started: list[RunningConsumer] = []

    def start() -> RunningConsumer:
        started.append(RunningConsumer(ingest_app))
        return started[-1]

    yield start
    for running in started:
        running.stop()
