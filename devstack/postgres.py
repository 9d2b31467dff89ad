"""PostgreSQL 15 at DATABASE_URL's address: a cluster of our own, driven by pg_ctl, or a server that
already answers there (used as it is, never stopped). Its settings come from
infra/postgres/postgresql.conf, applied on every `make infra`; its TLS and its two roles (the owner,
MIGRATION_DATABASE_URL's, and the service's, DATABASE_URL's) from devstack/postgres_security.py."""

import os
import pwd
import re
import shutil
import subprocess
from contextlib import closing
from functools import cached_property
from pathlib import Path

import psutil
import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from config import private_dir
from devstack import postgres_security
from devstack.install import ensure_package
from devstack.output import Failure, failure_with_log, say
from devstack.process import (
    alive,
    named,
    pid_of,
    port_open,
    read_pid,
    rotate_log,
    run_logged,
    server_user_options,
    wait_for,
)
from devstack.settings import Settings, is_local, shown
from devstack.status import Status

BIN = Path("/usr/lib/postgresql/15/bin")
# PostgreSQL refuses to run as root, so as root the server runs as this system user.
SERVER_USER = "postgres"
# Our block at the end of the cluster's postgresql.conf, written only once initdb succeeded: a data
# dir without it is a leftover of an interrupted init. The second is the marker of scripts/infra.sh,
# which wrote the settings themselves into the block; it stays in the block, for the clones that
# still run that script on a shared home.
MARKER = "# --- order-service (make infra)"
OLD_MARKER = "# --- order-service (scripts/infra.sh)"
MARKERS = (MARKER, OLD_MARKER)
# infra/postgres/postgresql.conf is copied here (beside postgresql.conf, which includes it), so that
# the running cluster does not depend on the clone that started it.
SETTINGS_COPY = "order-service.conf"
BLOCK = f"""{MARKER}
{OLD_MARKER}
# Port, listen address and socket directory come from pg_ctl -o, so DATABASE_URL can change them.
# The settings are infra/postgres/postgresql.conf's, copied here by every `make infra`.
include '{SETTINGS_COPY}'
"""
SETTING = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=?\s*('(?:[^']|'')*'|[^#\s]*)", re.MULTILINE)


def cluster_dir(settings: Settings) -> Path:
    """Where the cluster lives: $ORDER_SERVICE_HOME/pg. As root the server runs as SERVER_USER,
    who must pass through the home (it gets 0710, the server's group); where it can't even reach
    the home (under /root, 0700), the cluster lives under PostgreSQL's own home instead, and
    $ORDER_SERVICE_HOME/pg links to it."""
    if os.geteuid() == 0 and not _reaches(SERVER_USER, settings.home.parent):
        return Path("/var/lib/postgresql/order-service") / settings.home_hash()
    return settings.home / "pg"


def _reaches(user: str, path: Path) -> bool:
    try:
        return subprocess.run(["test", "-x", str(path)], **server_user_options(user)).returncode == 0
    except KeyError:  # no such user yet: PostgreSQL is not installed
        return False


def parse_settings(text: str) -> dict[str, str]:
    """name = value lines of a postgresql.conf, as written (comments and includes dropped)."""
    return {name.lower(): value for name, value in SETTING.findall(text) if not name.startswith("include")}


class Postgres:
    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The owner logs in to a server that was there before us (the service's role may only read
        # and insert), and makes the database there if it is missing.
        url = settings.owner_url
        self.user, self.password = url.username or "", url.password or ""
        self.host, self.port, self.database = url.host, url.port or 5432, url.database
        self.log = settings.logs / "postgres.log"
        self.mode = ""  # what launch found: ours, external or new
        self.pid: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @cached_property
    def dir(self) -> Path:
        """Known once PostgreSQL (and its user) is installed: prepare() installs it first."""
        return cluster_dir(self.settings)

    @property
    def data(self) -> Path:
        return self.dir / "data"

    # --- the server's state ----------------------------------------------------------------------

    def our_pid(self) -> int | None:
        return pid_of(self.data / "postmaster.pid", named("postgres"))

    def _isready(self) -> int:
        """pg_isready: 0 accepting, 1 rejecting (starting up), 2 no answer, 3 bad parameters."""
        return subprocess.run([str(BIN / "pg_isready"), "-q", "-t", "2", "-h", self.host, "-p",
                               str(self.port)]).returncode

    def _login_error(self, database: str | None = None) -> str | None:
        """None when the configured credentials work; otherwise libpq's complaint."""
        try:
            psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                             dbname=database or self.database, connect_timeout=5).close()
            return None
        except psycopg2.Error as exc:
            return " ".join(str(exc).split())

    def _superuser(self) -> psycopg2.extensions.connection:
        """The cluster's superuser over the unix socket (trust, in a directory only its owner may
        enter), so it works whatever the configured role may do. No password on any command line."""
        connection = psycopg2.connect(host=str(self.dir), port=self.port, user="postgres", dbname="postgres")
        connection.autocommit = True
        return connection

    # --- the service interface -------------------------------------------------------------------

    def prepare(self) -> None:
        ensure_package(str(BIN / "postgres"), "postgresql-15", self.settings.logs)
        self._prepare_dir()

    def launch(self) -> None:
        self.pid = self.our_pid()
        if self.pid:
            running_port = read_pid(self.data / "postmaster.pid", line=3)
            if running_port != self.port:
                raise Failure(f"our PostgreSQL (pid {self.pid}) listens on port {running_port}, but "
                              f"DATABASE_URL says {self.port}: run 'make infra-down' first")
            self.mode = "ours"
            return
        if self._isready() in (0, 1):
            self.mode = "external"
            return
        if not is_local(self.host):
            raise Failure(f"nothing answers at {self.address} (from DATABASE_URL) and it is not this "
                          "machine, so no server can be started there")
        if port_open(self.host, self.port):
            raise Failure(f"port {self.port} on {self.host} is taken by a program that is not PostgreSQL; "
                          "stop it or choose another port in DATABASE_URL")
        self._start()

    def ready(self) -> None:
        if self.mode == "external":
            self._use_external()
            return
        if self.mode == "ours" and not self._wait_ready():
            say(f"PostgreSQL: ours (pid {self.pid}) has gone away; starting it again")
            self._start()
        if self.mode == "new" and not self._wait_ready():
            raise failure_with_log("PostgreSQL exited while starting", self.log)
        self._apply_settings(running=True)
        postgres_security.up(self.dir, self.data, self.port, self.settings.ca_dir, [self.host, "localhost"],
                             self.settings.owner_url, self.settings.database_url)
        pid = self.our_pid()
        if self.mode == "ours":
            say(f"PostgreSQL: already running at {self.address} (ours, pid {pid})")
        else:
            say(f"PostgreSQL: up at {self.address} (ours, pid {pid})")

    def down(self) -> None:
        pid = self.our_pid()
        if not pid:
            say("PostgreSQL: ours is not running")
            return
        say(f"PostgreSQL: stopping (pid {pid})")
        if not self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30"):
            raise Failure(f"pg_ctl stop failed; read {self.log}")

    def status(self) -> Status:
        pid = self.our_pid()
        files = f"data {self.data}  log {self.log}"
        if pid:
            state = "up" if self._isready() == 0 else "starting"
            return Status(state, self.address, f"ours, pid {pid}", files)
        installed = shutil.which(str(BIN / "pg_isready"))
        if (installed and self._isready() == 0) or port_open(self.host, self.port):
            return Status("up", self.address, "external, not started by this script")
        return Status("down", self.address, "-", files)

    # --- starting ---------------------------------------------------------------------------------

    def _start(self) -> None:
        rotate_log(self.log)
        self._init_cluster()
        self._apply_settings(running=False)
        self._clear_stale_locks()
        say(f"PostgreSQL: starting at {self.address} (data {self.data})")
        # No wait (-W): Kafka's JVM boots meanwhile; ready() waits. The log is opened here rather
        # than by pg_ctl -l because, as root, the server's user may not reach the home's logs/.
        if not self._pg_ctl("start", "-W", "-o", self._server_options()):
            raise failure_with_log("PostgreSQL did not start", self.log)
        self.mode = "new"

    def _server_options(self) -> str:
        return f"-p {self.port} -k '{self.dir}' -c listen_addresses='{self.host}'"

    def _pg_ctl(self, *args: str) -> bool:
        return run_logged([str(BIN / "pg_ctl"), *args, "-D", str(self.data)], self.log, timeout_s=60,
                          cwd=self.dir, **server_user_options(SERVER_USER))

    def _wait_ready(self) -> bool:
        """True once it accepts connections; False if our server is gone; fails after 30 s."""
        if wait_for(lambda: self._isready() == 0 or not self.our_pid(), 30) and self._isready() == 0:
            return True
        if self.our_pid():
            raise failure_with_log("PostgreSQL did not start within 30 s", self.log)
        return False

    def _prepare_dir(self) -> None:
        if os.geteuid() != 0:
            private_dir(self.settings.home)
            private_dir(self.dir)
            return
        server = pwd.getpwnam(SERVER_USER)
        # The server's user must pass through the parent (the home, or PostgreSQL's directory of
        # our clusters) but not list it, and nobody else may.
        if self.dir.parent != self.settings.home:
            private_dir(self.settings.home)
        private_dir(self.dir.parent, 0o710, group=server.pw_gid)
        private_dir(self.dir, owner=server.pw_uid, group=server.pw_gid)
        link = self.settings.home / "pg"
        if self.dir != link and not os.path.lexists(link):
            link.symlink_to(self.dir)  # for people looking for the data; never followed by us

    def _init_cluster(self) -> None:
        if self._block() is not None:
            return
        # Never delete a directory that holds a cluster: someone's data may be in it.
        if (self.data / "PG_VERSION").exists():
            raise Failure(
                f"{self.data} holds a PostgreSQL cluster that `make infra` did not finish setting up (no "
                f"'{MARKER}' line in its postgresql.conf), so it is left alone. If it is yours, add that "
                "line to its postgresql.conf to use it as it is; if it is a leftover of an interrupted "
                f"'make infra' and holds nothing you need, move it away (mv '{self.data}' "
                f"'{self.data}.old') and retry.")
        shutil.rmtree(self.data, ignore_errors=True)
        say(f"creating a PostgreSQL cluster in {self.data}")
        if not run_logged([str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                           "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256"],
                          self.log, cwd=self.dir, **server_user_options(SERVER_USER)):
            raise failure_with_log("initdb failed", self.log)

    def _clear_stale_locks(self) -> None:
        """After a crash, postgres refuses to start while the pid in its lock files "exists", and a
        zombie or an unrelated program that got the same pid counts. Clearing them is safe once no
        live process works in the data dir (every server process chdirs there): the guarantee
        postgres' own shared-memory interlock gives."""
        locks = list(self.dir.glob(".s.PGSQL.*"))
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists() and not locks:
            return

        def workers() -> list[int]:
            return [p.pid for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(self.data)
                    and alive(p.pid)]

        if not wait_for(lambda: not workers(), 10):
            raise Failure(f"processes of an earlier PostgreSQL (pids {workers()}) still use {self.data}; "
                          "stop them first")
        say("PostgreSQL: removing stale lock files of a server that is gone")
        for path in [pid_file, *self.dir.glob(".s.PGSQL.*")]:
            path.unlink(missing_ok=True)

    # --- a server of someone else's ---------------------------------------------------------------

    def _use_external(self) -> None:
        if self._isready() == 1:
            wait_for(lambda: self._isready() != 1, 5)
        error = self._login_error()
        if error is None:
            say(f"PostgreSQL: using the server already at {self.address} (not started by this script)")
            return
        if f'database "{self.database}" does not exist' in error and self._login_error("postgres") is None:
            self._create_database_as_user()
            say(f"PostgreSQL: created database {self.database} on the server already at {self.address}")
            return
        raise Failure(f"a PostgreSQL server that this script did not start answers at {self.address} but "
                      f"refuses {self.user}/{self.database}: {error}. Either set DATABASE_URL to credentials "
                      "that work there, or stop that server (e.g. 'pg_ctlcluster 15 main stop') so that "
                      "this script can start its own.")

    def _create_database_as_user(self) -> None:
        try:
            with closing(psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                          password=self.password, dbname="postgres",
                                          connect_timeout=5)) as connection:
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        except psycopg2.Error:
            raise Failure(f"the PostgreSQL server at {self.address} has no database {self.database} and "
                          f"{self.user} may not create it") from None

    # --- the settings file ------------------------------------------------------------------------

    def _block(self) -> str | None:
        """Our block at the end of the cluster's postgresql.conf, or None."""
        try:
            text = (self.data / "postgresql.conf").read_text()
        except OSError:
            return None
        starts = [start for start in (text.find("\n" + marker + "\n") for marker in MARKERS) if start >= 0]
        return text[min(starts) + 1:] if starts else None

    def _write(self, path: Path, text: str) -> None:
        """Replace a file of the cluster's, as its owner would have written it."""
        staging = path.with_name(path.name + ".tmp")
        staging.write_text(text)
        staging.chmod(0o600)
        owner = os.stat(self.data)
        os.chown(staging, owner.st_uid, owner.st_gid)
        staging.replace(path)

    def _refused_settings(self) -> str:
        """What the server says of its config files as they are now (`postgres -C` reads them as a
        start would, running server or not); empty when it accepts them."""
        checked = subprocess.run([str(BIN / "postgres"), "-D", str(self.data), "-C", "max_connections"],
                                 capture_output=True, text=True, cwd=self.dir,
                                 **server_user_options(SERVER_USER))
        if checked.returncode == 0:
            return ""
        # Its log lines, without their time and pid.
        return " ".join(re.sub(r"^.*?\b[A-Z]+:\s+", "", line) for line in checked.stderr.splitlines()
                        if line.strip())

    def _apply_settings(self, running: bool) -> None:
        """Copy infra/postgres/postgresql.conf into the cluster and make its postgresql.conf include
        it; a running server reloads, or restarts when a changed setting takes a restart."""
        wanted = self.settings.postgres_conf.read_text()
        copy = self.data / SETTINGS_COPY
        block = self._block() or ""
        before = copy.read_text() if copy.exists() else ""
        if block == BLOCK and before == wanted:
            return
        old = {**parse_settings(block), **parse_settings(before)}
        conf = self.data / "postgresql.conf"
        conf_text = conf.read_text()
        self._write(copy, wanted)
        self._write(conf, conf_text[:len(conf_text) - len(block)] + BLOCK)
        refused = self._refused_settings()
        if refused:
            # A reload would skip them, and the next start would fail: the previous files stay.
            self._write(copy, before)
            self._write(conf, conf_text)
            raise Failure(f"PostgreSQL refuses {shown(self.settings.postgres_conf)}: {refused}; "
                          "fix it and retry")
        if not running:
            return
        new = parse_settings(wanted)
        changed = sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
        with closing(self._superuser()) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT pg_reload_conf()")
            cursor.execute("SELECT name FROM pg_settings WHERE context = 'postmaster' AND name = ANY(%s)",
                           (changed,))
            needs_restart = [name for (name,) in cursor.fetchall()]
        if needs_restart:
            say(f"PostgreSQL: {', '.join(needs_restart)} changed in {shown(self.settings.postgres_conf)}, "
                "which takes a restart: restarting it (open connections are dropped)")
            if not self._pg_ctl("restart", "-m", "fast", "-w", "-t", "30", "-o", self._server_options()):
                raise failure_with_log("PostgreSQL did not restart", self.log)
        elif changed:
            say(f"PostgreSQL: reloaded the changed settings ({', '.join(changed)})")
