"""Settings out of their range stop the start with one message that names the variable: from the
environment (config.py's import, gunicorn's master, devstack) and from code (the factory)."""

import os
import re
import subprocess
import sys

import pytest

from app import create_app
from config import DEFAULTS, LIMITS, TestConfig
from harness import ROOT

# The factory needs a database URL; none of these tests connects to it.
NO_DATABASE = "postgresql+psycopg2://x@127.0.0.1/x"

# Each a value that once started the service and misbehaved later (or never worked).
OUT_OF_RANGE = [
    # cachelib takes 0 for "never expires" and drops such entries first whenever it prunes.
    ("CACHE_TTL", "0"),
    ("CACHE_TTL", "-5"),
    ("CONSUMER_BATCH_SIZE", "0"),  # kafka-python asserts max_records > 0 inside every poll
    ("CONSUMER_BATCH_WAIT_MS", "0"),  # a consumer that spins
    # kafka-python asserts heartbeat <= session timeout when each consumer is created
    ("CONSUMER_HEARTBEAT_INTERVAL_MS", "20000"),
    ("DB_POOL_SIZE", "-1"),
    ("DB_STATEMENT_TIMEOUT_MS", "-100"),
    ("GUNICORN_THREADS", "100000"),
    ("CACHE_MAX_BYTES", str(1 << 50)),
    ("PORT", "70000"),
]


def start_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name, value", OUT_OF_RANGE)
def test_a_setting_out_of_range_in_the_environment_stops_the_import(name, value):
    run = start_python("import config", **{name: value})
    assert run.returncode != 0
    assert f"ValueError: {name}={int(value)} is out of range" in run.stderr


@pytest.mark.parametrize("name, value", OUT_OF_RANGE)
def test_a_setting_out_of_range_given_in_code_stops_the_factory(name, value):
    with pytest.raises(ValueError, match=f"^{name}={int(value)} is out of range: .*, from "):
        create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": NO_DATABASE,
                                name: int(value)})


def test_gunicorn_stops_at_once_with_one_line_naming_the_setting():
    """Not a traceback per worker booting again and again: the master stops before forking."""
    run = subprocess.run([str(ROOT / ".venv" / "bin" / "gunicorn"), "--check-config", "wsgi:app"],
                         cwd=ROOT, env={**os.environ, "CACHE_TTL": "0"}, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        "order-service: CACHE_TTL=0 is out of range: seconds an order stays cached (0 is not 'forever' "
        "here), from 1 to 31536000. Fix it in the environment or .env."]


def test_every_whole_number_setting_has_a_range_that_holds_its_default():
    numbers = {name for name, value in DEFAULTS.items() if type(value) is int}
    assert numbers == set(LIMITS), "each whole-number setting needs its range in config.LIMITS"
    for name, (low, high, _) in LIMITS.items():
        assert low <= DEFAULTS[name] <= high, name


@pytest.mark.parametrize("env, words", [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_TLS"}, "KAFKA_SECURITY_PROTOCOL='SASL_TLS' is not one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
     "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
])
def test_kafka_settings_that_cannot_work_stop_gunicorn_and_the_factory(env, words):
    """Before, the worker's consumer thread died on them while /readyz said "starting"."""
    run = subprocess.run([str(ROOT / ".venv" / "bin" / "gunicorn"), "--check-config", "wsgi:app"],
                         cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("order-service: ") and words in lines[0], run.stderr
    with pytest.raises(ValueError, match=re.escape(words)):
        create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": NO_DATABASE, **env})


def test_devstack_stops_at_once_with_one_line_naming_the_setting():
    run = subprocess.run([sys.executable, "-m", "devstack", "status"], cwd=ROOT,
                         env={**os.environ, "PORT": "70000"}, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        "infra: error: PORT=70000 is out of range: a TCP port, from 1 to 65535. "
        "Fix it in the environment or .env."]


def test_the_consumer_heartbeats_at_the_configured_interval():
    # Members learn of a rebalance from a heartbeat's answer, so a joining worker waits up to this
    # long for its share. Creating the consumer contacts no broker (its API version is pinned).
    from app.ingest.consumer import OrderConsumer

    app = create_app(TestConfig, {"SQLALCHEMY_DATABASE_URI": NO_DATABASE,
                                  "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
                                  "CONSUMER_HEARTBEAT_INTERVAL_MS": 250})
    consumer = OrderConsumer(app)._new_consumer()
    try:
        assert consumer._coordinator.heartbeat.config["heartbeat_interval_ms"] == 250
    finally:
        consumer.close()
