"""Fixtures against the real services started by `make infra`: a PostgreSQL database and Kafka topics
of the tests' own, created here and dropped afterwards. The `orders` database is never touched."""

import threading
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from flask import Flask

from app import create_app
from app.extensions import db
from app.ingest.consumer import OrderConsumer
from config import Config, TestConfig
from tests.helpers import contract_example, create_database, drop_database


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
    """The app on the test database, migrated with `flask db upgrade`'s own code."""
    from flask_migrate import upgrade

    application = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": database_url})
    with application.app_context():
        upgrade()
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def app_ctx(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app


@pytest.fixture
def empty_db(app_ctx: Flask) -> Flask:
    """The test database with no orders in it."""
    db.session.execute(db.text("TRUNCATE orders CASCADE"))
    db.session.commit()
    return app_ctx


@pytest.fixture
def example_order() -> dict[str, Any]:
    """A fresh copy of the contract's canonical example, free to modify."""
    return contract_example()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    from kafka.errors import NoBrokersAvailable

    from tests.helpers import admin

    bootstrap = Config.KAFKA_BOOTSTRAP_SERVERS
    try:
        admin(bootstrap).close()
    except NoBrokersAvailable:
        pytest.exit(f"Kafka is not reachable at {bootstrap}. Start it with `make infra`.", returncode=3)
    return bootstrap


@pytest.fixture
def topics(kafka_bootstrap: str):
    """An orders topic (6 partitions), a dead-letter topic and a group name, all new."""
    from tests.helpers import create_topics, delete_topics

    created = create_topics(kafka_bootstrap)
    yield created
    delete_topics(created)


@pytest.fixture
def ingest_app(database_url, topics, empty_db) -> Flask:
    """An app on the test database and this test's own topics and group."""
    return create_app(TestConfig, {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap,
        "KAFKA_TOPIC": topics.orders,
        "KAFKA_DLQ_TOPIC": topics.dlq,
        "KAFKA_GROUP_ID": topics.group,
        "CONSUMER_BATCH_WAIT_MS": 100,
        "CONSUMER_MAX_BACKOFF_S": 1,
    })


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
def run_consumer(ingest_app):
    """Start consumers on this test's topics; all are stopped (and must stop) at the end."""
    started: list[RunningConsumer] = []

    def start() -> RunningConsumer:
        started.append(RunningConsumer(ingest_app))
        return started[-1]

    yield start
    for running in started:
        running.stop()
