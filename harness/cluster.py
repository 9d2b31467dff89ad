"""A PostgreSQL cluster of one's own: initdb in a directory, started on a free port of 127.0.0.1 with
the settings of infra/postgres/postgresql.conf (the ones `make infra` applies) and any overrides,
stopped and deleted afterwards. For measurements that need other settings than the shared server's,
or a server no one else's tests run on; never touches the server `make infra` started."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from harness import ROOT
from harness.service import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SETTINGS_FILE = ROOT / "infra" / "postgres" / "postgresql.conf"
SUPERUSER = "postgres"
_OVERRIDES = "overrides.conf"


def as_owner(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, its tools run as the `postgres` system user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class OwnCluster:
    """One PostgreSQL 15 cluster in a new directory under `parent` (a temporary one by default).

    `settings` are appended after the repository's settings file, so they win (an A/B of one
    setting). The superuser gets a random password; host connections need it (scram-sha-256)."""

    def __init__(self, settings: Mapping[str, str] | None = None, parent: Path | None = None,
                 settings_file: Path = SETTINGS_FILE) -> None:
        self.settings = dict(settings or {})
        self.settings_file = settings_file
        self.dir = Path(tempfile.mkdtemp(prefix="order-pg-", dir=parent))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of `database` as the superuser."""
        return f"postgresql+psycopg2://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout_s: int = 60) -> OwnCluster:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.dir.chmod(0o700)
        password_file = self.dir / "pwfile"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, "postgres", "postgres")
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8",
                   "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256",
                   f"--pwfile={password_file}"], "initdb")
        password_file.unlink()
        own_file = self.data / "order-service.conf"
        own_file.write_text(self.settings_file.read_text())
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude = 'order-service.conf'\ninclude_if_exists = '{_OVERRIDES}'\n")
        self._write_overrides(self.settings)
        if os.geteuid() == 0:
            shutil.chown(own_file, "postgres", "postgres")
        self._run([str(PG_BIN / "pg_ctl"), "start", "-w", "-t", str(timeout_s), "-D", str(self.data),
                   "-l", str(self.log_path), "-o", self._options()], "pg_ctl start")
        return self

    def restart(self, settings: Mapping[str, str], timeout_s: int = 120) -> None:
        """Restart with `settings` (instead of the earlier overrides) on top of the settings file."""
        self.settings = dict(settings)
        self._write_overrides(self.settings)
        self._run([str(PG_BIN / "pg_ctl"), "restart", "-w", "-t", str(timeout_s), "-D", str(self.data),
                   "-m", "fast", "-l", str(self.log_path), "-o", self._options()], "pg_ctl restart")

    def _options(self) -> str:
        return f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"

    def _write_overrides(self, settings: Mapping[str, str]) -> None:
        path = self.data / _OVERRIDES
        path.write_text("".join(f"{name} = '{value}'\n" for name, value in settings.items()))
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    def setting(self, name: str) -> str:
        """The running server's value of a setting (SHOW), e.g. to report it with a measurement."""
        out = self._run([str(PG_BIN / "psql"), "-X", "-At", "-h", str(self.dir), "-p", str(self.port),
                         "-U", SUPERUSER, "-d", "postgres", "-c", f"SHOW {name}"], "psql")
        return out.strip()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run([str(PG_BIN / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w"],
                      "pg_ctl stop")

    def destroy(self) -> None:
        """Stop the server and delete its directory, data and all."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> OwnCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def _run(self, command: list[str], what: str) -> str:
        done = subprocess.run(as_owner(command), capture_output=True, text=True, cwd=self.dir)
        if done.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{log}")
        return done.stdout
