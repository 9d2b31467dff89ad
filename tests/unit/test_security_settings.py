"""Secrets from files, the two PostgreSQL URLs, Kafka settings that would be silently ignored, and
the local CA's certificates: what a user configures becomes what the service uses, or a clear
refusal."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy.engine import make_url

from app.kafka_clients import KafkaSettings
from config import DEFAULTS, private_dir
from devstack.certs import ensure_ca, ensure_server_certificate

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json
from config import Config
print(json.dumps({"service": Config.SQLALCHEMY_DATABASE_URI, "migration": Config.MIGRATION_DATABASE_URL,
                  "kafka": Config.KAFKA_SASL_PASSWORD}))
"""


def configured(**env: str) -> dict[str, str]:
    """config.py's URLs and Kafka password in a process with only `env` set (every other setting
    empty, which means its default, so a developer's .env cannot fill it in)."""
    clean = {"PATH": os.environ["PATH"], **dict.fromkeys(DEFAULTS, ""), **env}
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    return json.loads(probe.stdout)


def test_passwords_come_from_files_with_any_character(tmp_path):
    database, kafka = tmp_path / "database", tmp_path / "kafka"
    database.write_text("p@ss:w/rd %?#\n")  # one trailing newline is the file's, not the password's
    kafka.write_text("kafka secret\n")
    found = configured(DATABASE_URL="postgresql+psycopg2://svc@db.example:5432/orders",
                       DATABASE_PASSWORD_FILE=str(database), KAFKA_SASL_PASSWORD_FILE=str(kafka))
    assert make_url(found["service"]).password == "p@ss:w/rd %?#"
    assert make_url(found["service"]).host == "db.example"
    assert found["kafka"] == "kafka secret"


def test_an_unreadable_password_file_is_named_not_shown(tmp_path):
    clean = {"PATH": os.environ["PATH"], **dict.fromkeys(DEFAULTS, ""),
             "DATABASE_PASSWORD_FILE": str(tmp_path / "missing")}
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True)
    assert probe.returncode != 0
    assert "DATABASE_PASSWORD_FILE=" in probe.stderr and "cannot be read" in probe.stderr


@pytest.mark.parametrize("env, migration", [
    ({}, DEFAULTS["MIGRATION_DATABASE_URL"]),  # make infra's two local roles
    ({"DATABASE_URL": "postgresql+psycopg2://one:pw@db:5432/orders"},  # one role does both
     "postgresql+psycopg2://one:pw@db:5432/orders"),
    ({"DATABASE_URL": "postgresql+psycopg2://svc:pw@db:5432/orders",
      "MIGRATION_DATABASE_URL": "postgresql+psycopg2://owner:pw2@db:5432/orders"},
     "postgresql+psycopg2://owner:pw2@db:5432/orders"),
])
def test_migrations_run_as_the_owner_or_as_the_only_role(env, migration):
    assert configured(**env)["migration"] == migration


@pytest.mark.parametrize("settings, words", [
    ({"ssl_cafile": "/ca.crt"}, "KAFKA_SSL_* is set, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
    ({"security_protocol": "SSL", "sasl_username": "u", "sasl_password": "p"}, "does not use SASL"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u"},
     "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u",
      "sasl_password": "p"}, "KAFKA_SASL_MECHANISM='GSSAPI' is not one of"),
])
def test_kafka_settings_that_would_be_ignored_or_incomplete_are_refused(settings, words):
    with pytest.raises(ValueError, match=words.replace("*", r"\*").replace("(", r"\(")):
        KafkaSettings("127.0.0.1:9094", **settings).check()


def test_kafka_settings_never_show_the_password():
    settings = KafkaSettings("b:9094", "SASL_SSL", "SCRAM-SHA-512", "svc", "hunter2-secret")
    assert "hunter2-secret" not in repr(settings) + settings.describe()


def test_certificates_are_issued_once_with_safe_modes_and_again_for_other_hosts(tmp_path):
    ca = ensure_ca(tmp_path / "ca")
    key, cert = tmp_path / "server.key", tmp_path / "server.crt"
    assert ensure_server_certificate(ca, key, cert, ["127.0.0.1", "localhost"])
    first = cert.read_bytes()
    assert not ensure_server_certificate(ca, key, cert, ["127.0.0.1", "localhost"])  # nothing to change
    assert ensure_ca(tmp_path / "ca").certificate == ca.certificate and cert.read_bytes() == first
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    issued = x509.load_pem_x509_certificate(first)
    issued.verify_directly_issued_by(ca.certificate)
    assert ensure_server_certificate(ca, key, cert, ["db.example"])  # another host: a new one
    other_ca = ensure_ca(tmp_path / "other")
    assert ensure_server_certificate(other_ca, key, cert, ["db.example"])  # another CA: a new one


def test_a_symlink_where_a_private_directory_goes_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "tls").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PermissionError, match="symbolic link"):
        private_dir(tmp_path / "tls")
