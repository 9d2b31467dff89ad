"""`make infra` (devstack/) keeps its guarantees: a fresh home starts, a second run reuses what runs,
a half-started run is recovered, a directory holding data is never deleted, a port held by someone
else gives a clear message, and `kill -9` of every service is undone by the next run; on a shared
host its directories are private and no password shows.

Every stack here lives in a temporary home on free ports and is stopped and removed afterwards: the
shared stack (~/.cache/order-service) is never touched. The Kafka jars come from the configured
home's downloads (DEVSTACK_DOWNLOADS), so a test home fetches nothing."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import psutil
import psycopg2
import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from app.ingest.dead_letters import MAX_DEAD_LETTER_BYTES, MAX_SOURCE_RECORD_BYTES
from config import order_service_home
from devstack import settings as devstack_settings
from devstack.__main__ import main as devstack_main
from devstack.postgres import parse_settings
from harness import ROOT
from harness.kafka import admin
from harness.service import Service, free_port
from harness.waiting import wait_until

pytestmark = pytest.mark.slow

PASSWORD = "infra-test-Secret-42"


class Home:
    """A home of the test's own, its settings in `env`, driven through make as a user would."""

    def __init__(self, database_url: str | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="order-infra-"))
        self.pg_port, self.kafka_port, self.edge_port = free_port(), free_port(), free_port()
        self.database_url = database_url or (
            f"postgresql+psycopg2://orders:{PASSWORD}@127.0.0.1:{self.pg_port}/orders")
        self.overrides = {
            "ORDER_SERVICE_HOME": str(self.path),
            "DATABASE_URL": self.database_url,
            # One role for both (a developer's .env may name others, on other servers).
            "MIGRATION_DATABASE_URL": self.database_url,
            "DATABASE_PASSWORD": "",
            "MIGRATION_DATABASE_PASSWORD": "",
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.kafka_port}",
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "KAFKA_SASL_PORT": str(free_port()),
            "KAFKA_TOPIC": "orders",
            "KAFKA_DLQ_TOPIC": "orders-dlq",
            "PORT": str(self.edge_port),
            "HOST": "127.0.0.1",
            "APP_BIND": f"127.0.0.1:{free_port()}",
            "EDGE_CACHE_DIR": "",
            # The developer's downloads (Maven's repository, the Kafka jars): nothing is fetched again.
            devstack_settings.DOWNLOADS_VARIABLE: os.environ.get(devstack_settings.DOWNLOADS_VARIABLE)
            or str(order_service_home()),
        }
        self.env = {**os.environ, **self.overrides}
        self.cache_dir = devstack_settings.default_edge_cache_dir(self.path)
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"

    def make(self, target: str, timeout_s: float = 180, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(["make", "-s", target], cwd=ROOT, env={**self.env, **extra}, text=True,
                              capture_output=True, timeout=timeout_s)

    def run_here(self, command: str, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture) -> tuple[int, str]:
        """`python -m devstack COMMAND` in the test's process: for runs that stop before anything
        starts (a refused directory or port), where a `make` and an interpreter per run would
        only cost time. Returns the exit code and what it printed."""
        with monkeypatch.context() as patched:
            for name, value in self.overrides.items():
                patched.setenv(name, value)
            code = devstack_main([command])
        printed = capsys.readouterr()
        return code, printed.out + printed.err

    def up(self, **extra: str) -> subprocess.CompletedProcess:
        run = self.make("infra", **extra)
        assert run.returncode == 0, run.stdout + run.stderr
        return run

    def pids(self) -> dict[str, int | None]:
        return {
            "postgres": _first_line_pid(self.path / "pg" / "data" / "postmaster.pid"),
            "kafka": _first_line_pid(self.path / "kafka" / "kafka.pid"),
            "nginx": _first_line_pid(self.path / "nginx" / "run" / "nginx.pid"),
        }

    def remove(self) -> None:
        if any(alive(pid) for pid in self.pids().values()):
            self.make("infra-down")
        for pid in self.pids().values():  # should a stop have failed
            if pid and psutil.pid_exists(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.path, ignore_errors=True)
        shutil.rmtree(self.cache_dir, ignore_errors=True)


def server_owned_dir(path: Path) -> Path:
    """A directory as `make infra` leaves it for PostgreSQL: as root, the server's user's."""
    path.mkdir(parents=True)
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(path, postgres.pw_uid, postgres.pw_gid)
    return path


def _first_line_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def show(home: Home, setting: str) -> str:
    """A setting of the server, as the configured role (logged in to its database) sees it."""
    connection = psycopg2.connect(host="127.0.0.1", port=home.pg_port, user="orders", password=PASSWORD,
                                  dbname="orders", connect_timeout=5)
    with closing(connection), connection.cursor() as cursor:
        cursor.execute(f"SHOW {setting}")
        return cursor.fetchone()[0]


def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    client = admin(bootstrap)
    try:
        response = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])[0]
    finally:
        client.close()
    return {name: value for name, value, *_ in response.resources[0][4]}


def partitions(bootstrap: str, topic: str) -> int:
    client = admin(bootstrap)
    try:
        return len(client.describe_topics([topic])[0]["partitions"])
    finally:
        client.close()


def edge_answer(home: Home) -> tuple[int, bytes]:
    """The edge answers for itself: no gunicorn runs behind it here."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", home.edge_port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def works(home: Home) -> None:
    """Each of the three serves: PostgreSQL logs the role in, Kafka has the topics, nginx answers."""
    assert show(home, "server_version").startswith("15.")
    assert partitions(home.bootstrap, "orders") == 6
    status, body = edge_answer(home)
    assert status == 503 and b'"service_unavailable"' in body


@contextmanager
def held_port(port: int) -> Iterator[socket.socket]:
    """Someone else's program on `port`: it accepts connections and never answers."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    try:
        yield sock
    finally:
        sock.close()


class CommandLineWatch:
    """Samples every process's command line while a command runs, for a string that must not show."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.seen: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="cmdline-watch")

    def _watch(self) -> None:
        while not self.stop.wait(0.005):
            for process in psutil.process_iter(["cmdline"]):
                line = " ".join(process.info["cmdline"] or ())
                if self.secret in line:
                    self.seen.append(line)

    def __enter__(self) -> "CommandLineWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture(scope="module")
def home() -> Iterator[Home]:
    """One stack for the module's sequence: started fresh by the first test, still up after each."""
    stack = Home()
    yield stack
    stack.remove()


@pytest.fixture
def new_home() -> Iterator[Home]:
    homes: list[Home] = []

    def make(**kwargs) -> Home:
        homes.append(Home(**kwargs))
        return homes[-1]

    yield make
    for made in homes:
        made.remove()


# --- the guarantees, in the order a user meets them -------------------------------------------------

def test_a_fresh_home_starts_with_private_directories_and_no_password_in_sight(home):
    with CommandLineWatch(PASSWORD) as watch:
        run = home.up()
    out = run.stdout + run.stderr
    assert "creating a PostgreSQL cluster" in out
    for line in ("PostgreSQL: up at", "Kafka: created topics orders, orders-dlq (6 partitions)",
                 "Kafka: up at", "nginx: up at"):
        assert line in out
    works(home)
    assert topic_configs(home.bootstrap, "orders")["max.message.bytes"] == str(MAX_SOURCE_RECORD_BYTES)
    assert topic_configs(home.bootstrap, "orders-dlq")["max.message.bytes"] == str(MAX_DEAD_LETTER_BYTES)
    broker = (home.path / "kafka" / "server.properties").read_text()
    assert f"message.max.bytes={MAX_SOURCE_RECORD_BYTES}\n" in broker
    # Secrets: no command line, message or log of the run holds the password.
    assert watch.seen == []
    assert PASSWORD not in out
    for log in (home.path / "logs").iterdir():
        assert PASSWORD not in log.read_text(errors="replace"), log
    # A shared host: nothing of the home for others; nginx's workers are not root.
    assert home.path.stat().st_mode & 0o007 == 0
    for name in ("logs", "kafka", "kafka/data", "nginx", "nginx/logs", "pg", "pg/data"):
        assert (home.path / name).stat().st_mode & 0o077 == 0, name
    assert home.cache_dir.stat().st_mode & 0o007 == 0
    if os.geteuid() == 0:
        master = psutil.Process(home.pids()["nginx"])
        assert master.children() and all(worker.uids().real != 0 for worker in master.children())


def test_a_second_run_reuses_what_runs(home):
    before = home.pids()
    run = home.up()
    assert home.pids() == before
    for line in ("PostgreSQL: already running at", "Kafka: already running at", "nginx: already running at"):
        assert line in run.stdout
    assert "starting" not in run.stdout
    works(home)


def test_a_running_topic_keeps_the_settings_it_was_given(home):
    """The dead-letter topic's limit is set incrementally: a setting someone gave the topic (here a
    retention) survives `make infra`, which restores only the limit."""
    client = admin(home.bootstrap)
    try:
        # The old, non-incremental request: the topic now has exactly these two settings.
        client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "orders-dlq", configs={
            "retention.ms": "4321000", "max.message.bytes": "1000"})])
    finally:
        client.close()
    wait_until(lambda: topic_configs(home.bootstrap, "orders-dlq")["max.message.bytes"] == "1000", 10,
               "the broker applied the topic's settings")
    home.up()
    configs = topic_configs(home.bootstrap, "orders-dlq")
    assert configs["max.message.bytes"] == str(MAX_DEAD_LETTER_BYTES)
    assert configs["retention.ms"] == "4321000"


def test_postgresql_settings_come_from_the_file_with_a_reload_or_a_restart(home, tmp_path):
    conf = tmp_path / "postgresql.conf"
    original = (ROOT / "infra" / "postgres" / "postgresql.conf").read_text()
    wanted = parse_settings(original)
    assert show(home, "shared_buffers") == wanted["shared_buffers"]
    assert show(home, "max_connections") == wanted["max_connections"]
    conf.write_text(original + "work_mem = 7MB\n")
    run = home.up(DEVSTACK_POSTGRES_CONF=str(conf))
    assert "PostgreSQL: reloaded the changed settings (work_mem)" in run.stdout
    assert show(home, "work_mem") == "7MB"
    other = "192MB" if wanted["shared_buffers"] != "192MB" else "160MB"
    smaller = original.replace(f"shared_buffers = {wanted['shared_buffers']}", f"shared_buffers = {other}")
    conf.write_text(smaller + "work_mem = 7MB\n")
    run = home.up(DEVSTACK_POSTGRES_CONF=str(conf))
    assert "shared_buffers changed in" in run.stdout and "takes a restart: restarting it" in run.stdout
    assert show(home, "shared_buffers") == other
    # A setting PostgreSQL refuses is named, and the running settings stay.
    conf.write_text(original + "work_mem = '7 lots'\n")
    run = home.make("infra", DEVSTACK_POSTGRES_CONF=str(conf))
    assert run.returncode != 0 and "work_mem" in run.stderr and "fix" in run.stderr
    assert show(home, "work_mem") == "7MB"
    # The repository's file again: back to its values.
    run = home.up()
    assert show(home, "shared_buffers") == wanted["shared_buffers"] and show(home, "work_mem") == "4MB"


def test_a_port_taken_by_another_program_is_named_for_the_edge(home):
    pid = home.pids()["nginx"]
    os.kill(pid, signal.SIGQUIT)
    wait_until(lambda: not alive(pid) and not [p for p in psutil.process_iter(["name"])
                                             if p.info["name"] == "nginx" and p.ppid() == pid],
               15, "nginx stopped")
    with held_port(home.edge_port):
        run = home.make("infra")
    assert run.returncode != 0
    assert f"127.0.0.1:{home.edge_port} is taken by another program" in run.stderr
    assert "set PORT for the edge" in run.stderr
    home.up()
    works(home)


def test_kill_9_of_every_service_then_make_infra_brings_them_all_back(home):
    killed = home.pids()
    assert all(killed.values())
    for pid in killed.values():
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in killed.values()), 15, "the services died")
    run = home.up()
    for line in ("PostgreSQL: up at", "Kafka: up at", "nginx: up at"):
        assert line in run.stdout
    assert "outlived their master" in run.stdout  # nginx's workers kept the port
    assert all(alive(pid) for pid in home.pids().values())
    works(home)


def test_a_half_started_earlier_run_is_recovered(new_home):
    """Left behind: an interrupted initdb and storage format, pid files naming a live process that
    is not ours, and then a `make infra` killed while Kafka was starting."""
    home = new_home()
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        server_owned_dir(home.path / "pg")
        (home.path / "pg" / "data" / "base").mkdir(parents=True)
        (home.path / "kafka" / "data").mkdir(parents=True)
        (home.path / "kafka" / "data" / "bootstrap.checkpoint.tmp").write_text("")
        (home.path / "kafka" / "kafka.pid").write_text(f"{bystander.pid}\n")
        (home.path / "nginx" / "run").mkdir(parents=True)
        (home.path / "nginx" / "run" / "nginx.pid").write_text(f"{bystander.pid}\n")
        first = subprocess.Popen(["make", "-s", "infra"], cwd=ROOT, env=home.env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
        for line in first.stdout:
            if "Kafka: starting" in line:
                os.killpg(first.pid, signal.SIGKILL)
                break
        first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        run = home.up()
        assert "Kafka: already running" in run.stdout or "Kafka: up at" in run.stdout
        works(home)
        assert alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()


def test_a_postgresql_directory_holding_data_is_never_deleted(new_home, monkeypatch, capsys):
    home = new_home()
    data = server_owned_dir(home.path / "pg") / "data"
    data.mkdir()
    (data / "PG_VERSION").write_text("15\n")
    (data / "postgresql.conf").write_text("# someone's settings, without make infra's marker line\n")
    (data / "base").mkdir()
    code, printed = home.run_here("up", monkeypatch, capsys)
    assert code != 0
    assert "holds a PostgreSQL cluster" in printed and "move it away" in printed
    assert (data / "PG_VERSION").read_text() == "15\n" and (data / "base").is_dir()


def test_a_kafka_directory_holding_log_segments_is_never_deleted(home, new_home, monkeypatch, capsys):
    """Its PostgreSQL is the module's (a server that answers is used, not started)."""
    other = new_home(database_url=home.database_url)
    segment = other.path / "kafka" / "data" / "orders-0" / "00000000000000000000.log"
    segment.parent.mkdir(parents=True)
    segment.write_bytes(b"records")
    code, printed = other.run_here("up", monkeypatch, capsys)
    assert code != 0
    assert "holds Kafka log segments but no meta.properties" in printed and "move it away" in printed
    assert segment.read_bytes() == b"records"


def test_a_port_taken_by_another_program_is_named_for_postgresql_and_kafkas_controller(
        home, new_home, monkeypatch, capsys):
    fresh = new_home()
    with held_port(fresh.pg_port):
        code, printed = fresh.run_here("up", monkeypatch, capsys)
    assert code != 0
    assert f"port {fresh.pg_port} on 127.0.0.1 is taken by a program that is not PostgreSQL" in printed
    other = new_home(database_url=home.database_url)
    controller = int(other.env["KAFKA_CONTROLLER_PORT"])
    with held_port(controller):
        code, printed = other.run_here("up", monkeypatch, capsys)
    assert code != 0
    assert f"controller port 127.0.0.1:{controller} is taken by another program" in printed
    assert "set KAFKA_CONTROLLER_PORT" in printed


# --- a shared host ------------------------------------------------------------------------------------

def test_make_infra_refuses_a_symlink_planted_at_its_home(new_home):
    home = new_home()
    target = Path(tempfile.mkdtemp(prefix="order-infra-target-"))
    try:
        home.path.rmdir()
        home.path.symlink_to(target)
        run = home.make("infra")
        assert run.returncode != 0
        assert f"{home.path} is a symbolic link" in run.stderr and "Remove it" in run.stderr
        assert list(target.iterdir()) == []
        home.path.unlink()
    finally:
        shutil.rmtree(target, ignore_errors=True)


@pytest.mark.parametrize("planted", ["logs", "kafka", "nginx", "pg", "edge cache"])
def test_a_symlink_planted_at_a_directory_of_the_stack_is_refused_before_anything_starts(
        new_home, monkeypatch, capsys, planted):
    home = new_home()
    target = Path(tempfile.mkdtemp(prefix="order-infra-target-"))
    try:
        target.chmod(0o755)
        path = home.cache_dir if planted == "edge cache" else home.path / planted
        path.symlink_to(target)
        code, printed = home.run_here("up", monkeypatch, capsys)
        assert code != 0
        assert f"{path} is a symbolic link" in printed and "Remove it" in printed
        # Nothing went where the link points, and nothing was started.
        assert list(target.iterdir()) == []
        assert target.stat().st_uid == os.geteuid() and target.stat().st_mode & 0o777 == 0o755
        path.unlink()
        code, printed = home.run_here("status", monkeypatch, capsys)
        lines = {line.split()[1]: line for line in printed.splitlines()}
        assert code == 3 and all(lines[name].split()[2] == "down" for name in ("postgres", "kafka", "nginx"))
        # The provider is the developer's: this home started none of its own.
        assert "(ours" not in lines["keycloak"]
    finally:
        shutil.rmtree(target, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory of another user needs root")
def test_an_edge_cache_dir_of_another_user_is_refused(new_home, monkeypatch, capsys):
    home = new_home()
    home.cache_dir.mkdir()
    os.chown(home.cache_dir, 65534, 65534)  # nobody
    code, printed = home.run_here("up", monkeypatch, capsys)
    assert code != 0
    assert f"{home.cache_dir} belongs to nobody" in printed
    assert home.cache_dir.stat().st_uid == 65534 and list(home.cache_dir.iterdir()) == []


def test_gunicorn_refuses_a_symlink_planted_at_its_metrics_dir(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = tmp_path / "metrics"
    planted.symlink_to(elsewhere)
    service = Service({"PROMETHEUS_MULTIPROC_DIR": str(planted), "CONSUMER_ENABLED": "false"},
                      tmp_path / "gunicorn.log").launch()
    assert service.wait_exit(30) != 0
    assert f"PROMETHEUS_MULTIPROC_DIR: {planted} is a symbolic link" in service.log()
    assert list(elsewhere.iterdir()) == []


def test_a_database_url_that_cannot_be_parsed_is_named_without_its_password():
    url = f"postgresql+psycopg2://orders:{PASSWORD}@127.0.0.1:x/o"
    run = subprocess.run([sys.executable, "-m", "devstack", "status"], cwd=ROOT, text=True,
                         capture_output=True, timeout=60, env={**os.environ, "DATABASE_URL": url})
    assert run.returncode == 1
    assert "cannot parse DATABASE_URL=postgresql+psycopg2://orders:***@127.0.0.1:x/o" in run.stderr
    assert PASSWORD not in run.stderr + run.stdout
