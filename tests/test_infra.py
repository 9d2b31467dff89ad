"""scripts/infra.sh never deletes a directory that holds a cluster."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import ROOT
from harness.service import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def home():
    """A home the `postgres` user can reach, so that (as root too) the cluster would live in it."""
    path = Path(tempfile.mkdtemp(prefix="order-infra-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_an_unfinished_postgresql_cluster_is_left_alone_with_a_message(home, kafka_bootstrap):
    data = home / "pg" / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    (data / "postgresql.conf").write_text("# someone's settings, without the script's marker line\n")
    (data / "base").mkdir()
    env = {**os.environ, "ORDER_SERVICE_HOME": str(home), "PORT": str(free_port()),
           # Nothing answers there, so the script would set up a cluster of its own in `data`.
           "DATABASE_URL": f"postgresql+psycopg2://orders:orders@127.0.0.1:{free_port()}/orders"}
    try:
        run = subprocess.run(["bash", "scripts/infra.sh", "up"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
    finally:  # should it have started anything in this home, it stops it
        subprocess.run(["bash", "scripts/infra.sh", "down"], cwd=ROOT, env=env, capture_output=True,
                       timeout=120)
    assert run.returncode != 0
    assert "holds a PostgreSQL cluster" in run.stderr and "move it away" in run.stderr
    assert (data / "PG_VERSION").read_text() == "15\n" and (data / "base").is_dir()
