"""The OpenID Connect provider: a real Keycloak, from Maven Central, started without Docker like the
other services (`python -m devstack.keycloak credentials` prints the development users).

Where it listens and which realm it serves come from AUTH_ISSUER (config.py), so the service and its
provider can't disagree. If AUTH_ISSUER is not on this machine, nothing is started: that provider is
used as it is. Everything lives in $ORDER_SERVICE_HOME/keycloak (the server, its H2 data, the pid
file, the development secrets), its log in logs/keycloak.log. The realm comes from
infra/keycloak/realm.json with this home's secrets; a changed realm file is imported again.
"""

import json
import os
import secrets
import shutil
import signal
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from config import DEV_SECRETS, dev_secrets_dir, env_int, env_str, private_dir
from devstack.certs import write_file
from devstack.install import check_java, maven_fetch
from devstack.output import Failure, failure_with_log, say
from devstack.process import alive, pid_of, port_open, rotate_log, runs, start_detached, stop
from devstack.settings import ROOT, Settings, is_local
from devstack.status import Status

VERSION = "26.4.0"
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{VERSION}:tar.gz"
REALM_TEMPLATE = ROOT / "infra" / "keycloak" / "realm.json"
# Small on purpose: 2 cores shared by every service (its resident size and start-up times are in
# bench/README.md).
HEAP = "-Xms64m -Xmx384m -XX:MaxMetaspaceSize=256m -XX:+ExitOnOutOfMemoryError"
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 30
# Secrets made once per home; the app reads the two client secrets from files of their own
# (config.DEV_SECRETS), the tests read the rest.
ADMIN_USER = "admin"
USERS = {"developer": "every scope: orders:read, orders:list, orders:pii (asked for at sign-in)",
         "viewer": "orders:read only: one order at a time, personal fields masked"}


@dataclass(frozen=True)
class Issuer:
    """AUTH_ISSUER, taken apart: http(s)://host:port/realms/NAME."""

    url: str
    host: str
    port: int
    realm: str

    @classmethod
    def from_settings(cls) -> "Issuer":
        url = env_str("AUTH_ISSUER").rstrip("/")
        parts = urlsplit(url)
        realm = parts.path.rpartition("/realms/")[2]
        if parts.scheme not in ("http", "https") or not parts.hostname or not realm or "/" in realm:
            raise Failure(f"AUTH_ISSUER={url!r} is not a Keycloak realm's issuer (http://host:port/realms/NAME)")
        return cls(url, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), realm)

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def served(self) -> bool:
        """The realm's discovery document is served, with the issuer we expect."""
        try:
            with urllib.request.urlopen(self.discovery_url, timeout=3) as response:
                return json.load(response).get("issuer") == self.url
        except (OSError, ValueError, urllib.error.URLError):
            return False


class Keycloak:
    name = "keycloak"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.issuer = Issuer.from_settings()
        self.management_port = env_int("KEYCLOAK_MANAGEMENT_PORT")
        self.dir = settings.home / "keycloak"
        self.install_dir = self.dir / f"keycloak-{VERSION}"
        self.pid_file = self.dir / "keycloak.pid"
        self.credentials_file = self.dir / "dev-credentials.json"
        self.log = settings.logs / "keycloak.log"
        self.mode = ""  # what launch found: ours, external or new
        self.pid: int | None = None
        self._realm_changed = False  # prepare() found a realm file that differs from the imported one

    @property
    def local(self) -> bool:
        return is_local(self.issuer.host)

    def our_pid(self) -> int | None:
        # kc.sh execs java with -Dkc.home.dir=<the install dir>/bin/..: a recycled pid is another
        # program.
        return pid_of(self.pid_file, runs(f"-Dkc.home.dir={self.install_dir}/bin/.."))

    # --- the service interface -------------------------------------------------------------------

    def prepare(self) -> None:
        # A provider elsewhere, or one that another home started here (a test's stack uses the
        # developer's), is used as it is: nothing to fetch or make.
        if not self.local or (self.our_pid() is None and self.issuer.served()):
            self.mode = "external"
            return
        private_dir(self.dir)
        check_java()
        self._fetch()
        self._render_realm(self._credentials())

    def launch(self) -> None:
        if self.mode == "external":
            return
        self.pid = self.our_pid()
        if self.pid is not None and self._realm_changed:
            say("Keycloak: infra/keycloak/realm.json changed since it started; restarting it")
            self._stop()
        if self.pid is not None:
            self.mode = "ours"
            return
        for port in (self.issuer.port, self.management_port):
            if port_open("127.0.0.1", port):
                if port == self.issuer.port and self.issuer.served():
                    self.mode = "external"
                    return
                raise Failure(f"port {port} on 127.0.0.1 is taken by another program; stop it, or choose "
                              "another port (AUTH_ISSUER's for Keycloak, KEYCLOAK_MANAGEMENT_PORT for its "
                              "management interface)")
        self._start()

    def ready(self) -> None:
        if self.mode == "external":
            if not self.issuer.served():
                raise Failure(f"the provider at AUTH_ISSUER={self.issuer.url} does not serve its discovery "
                              f"document ({self.issuer.discovery_url}); check AUTH_ISSUER or start it")
            say(f"Keycloak: using the provider already at {self.issuer.url} (not started by this script)")
            return
        self._wait_ready()
        state = "already running" if self.mode == "ours" else "up"
        say(f"Keycloak: {state} at {self.issuer.url} (ours, pid {self.pid})")

    def down(self) -> None:
        self.pid = self.our_pid()
        if self.pid is None:
            say("Keycloak: ours is not running")
            return
        self._stop()

    def status(self) -> Status:
        address = f"{self.issuer.host}:{self.issuer.port}"
        pid = self.our_pid()
        if pid is not None:
            return Status("up" if self.issuer.served() else "starting", address, f"ours, pid {pid}",
                          f"data {self.install_dir / 'data'}  log {self.log}")
        if self.issuer.served():
            return Status("up", address, "external, not started by this script")
        return Status("down", address, "-")

    # --- fetching and preparing -------------------------------------------------------------------

    def _fetch(self) -> None:
        """Keycloak's distribution from Maven Central (the only download source here), unpacked once."""
        if (self.install_dir / "bin" / "kc.sh").is_file():
            return
        say(f"Keycloak: fetching {ARTIFACT} (160 MB) with Maven (once)")
        archive = maven_fetch(ARTIFACT, self.settings.downloads, self.dir / "download", self.settings.logs)
        say(f"Keycloak: unpacking into {self.install_dir}")
        unpacking = self.dir / "unpacking"
        shutil.rmtree(unpacking, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(unpacking, filter="data")
        (unpacking / f"keycloak-{VERSION}").rename(self.install_dir)
        shutil.rmtree(unpacking, ignore_errors=True)
        shutil.rmtree(archive.parent, ignore_errors=True)

    def _credentials(self) -> dict[str, str]:
        """The development secrets, made once (random, mode 0600) and kept: the admin's password,
        the users' passwords and the two clients' secrets, which are also written one per file
        where the app looks for them (config.DEV_SECRETS)."""
        if self.credentials_file.is_file():
            credentials = json.loads(self.credentials_file.read_text())
        else:
            credentials = {"admin": secrets.token_urlsafe(18),
                           **{f"user:{name}": secrets.token_urlsafe(12) for name in USERS},
                           **{name: secrets.token_urlsafe(32) for name in DEV_SECRETS}}
            write_file(self.credentials_file, (json.dumps(credentials, indent=2) + "\n").encode(), 0o600)
        private_dir(dev_secrets_dir())
        for name in DEV_SECRETS:
            write_file(dev_secrets_dir() / name, (credentials[name] + "\n").encode(), 0o600)
        return credentials

    def _realm_text(self, credentials: dict[str, str]) -> str:
        text = Template(REALM_TEMPLATE.read_text()).substitute(
            REALM=self.issuer.realm, AUDIENCE=env_str("AUTH_AUDIENCE"),
            WEB_CLIENT_ID=env_str("AUTH_WEB_CLIENT_ID"),
            WEB_CLIENT_SECRET=credentials["AUTH_WEB_CLIENT_SECRET"],
            CLI_CLIENT_ID=env_str("AUTH_CLI_CLIENT_ID"),
            CLI_CLIENT_SECRET=credentials["AUTH_CLI_CLIENT_SECRET"],
            DEVELOPER_PASSWORD=credentials["user:developer"], VIEWER_PASSWORD=credentials["user:viewer"])
        json.loads(text)  # a value that broke the JSON fails here, not inside Keycloak
        return text

    @property
    def _import_file(self) -> Path:
        return self.install_dir / "data" / "import" / "realm.json"

    def _render_realm(self, credentials: dict[str, str]) -> None:
        """The realm with this home's secrets where `--import-realm` finds it. Keycloak imports a
        realm once and keeps it: a changed realm file needs a fresh database (which holds nothing
        but the realm and its sessions). A running Keycloak is restarted by launch()."""
        text = self._realm_text(credentials)
        self._realm_changed = self._import_file.is_file() and self._import_file.read_text() != text
        if self._realm_changed:
            say("Keycloak: infra/keycloak/realm.json changed; its database is made again from it")
            shutil.rmtree(self.install_dir / "data" / "h2", ignore_errors=True)
        for directory in (self._import_file.parent.parent, self._import_file.parent):
            private_dir(directory)
        write_file(self._import_file, text.encode(), 0o600)

    # --- starting and stopping --------------------------------------------------------------------

    def _start(self) -> None:
        credentials = json.loads(self.credentials_file.read_text())
        rotate_log(self.log)
        say(f"Keycloak: starting at {self.issuer.url} (data {self.install_dir / 'data'}, log {self.log})")
        env = {**os.environ, "JAVA_OPTS_KC_HEAP": HEAP,
               # The first start creates this temporary admin; later starts ignore it. Its password
               # goes in the environment, never on a command line.
               "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER, "KC_BOOTSTRAP_ADMIN_PASSWORD": credentials["admin"]}
        self.pid = start_detached(
            [str(self.install_dir / "bin" / "kc.sh"), "start-dev", "--import-realm",
             f"--http-host={self.issuer.host}", f"--http-port={self.issuer.port}",
             f"--hostname={self.issuer.url.rpartition('/realms/')[0]}",
             f"--http-management-port={self.management_port}", "--health-enabled=true"],
            self.log, env=env)
        self.pid_file.write_text(f"{self.pid}\n")
        self.mode = "new"

    def _wait_ready(self) -> None:
        started = time.monotonic()
        next_note = started + 10
        while not self.issuer.served():
            if not alive(self.pid):
                self.pid_file.unlink(missing_ok=True)
                raise failure_with_log("Keycloak exited while starting", self.log)
            now = time.monotonic()
            if now - started > START_TIMEOUT_S:
                raise failure_with_log(f"Keycloak did not serve {self.issuer.discovery_url} within "
                                       f"{START_TIMEOUT_S} s", self.log)
            if now >= next_note:
                say(f"Keycloak: starting ({now - started:.0f} s; the first start imports the realm)")
                next_note = now + 10
            time.sleep(0.5)

    def _stop(self) -> None:
        stop("Keycloak", self.pid, signal.SIGTERM, STOP_TIMEOUT_S, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        self.pid = None

    # --- what `make run` prints -------------------------------------------------------------------

    def print_credentials(self) -> None:
        if not self.credentials_file.is_file():
            print(f"No development users: the provider at {self.issuer.url} was not started by `make infra`.")
            return
        stored = json.loads(self.credentials_file.read_text())
        print(f"Sign in on the web page with a development user (provider: {self.issuer.url}):")
        for name, what in USERS.items():
            print(f"  {name:<10} password {stored['user:' + name]:<20} {what}")
        print("A token for curl:  TOKEN=$(.venv/bin/flask auth token --scope orders:read --scope orders:pii)")
        print(f"Keycloak's admin console: {self.issuer.url.rpartition('/realms/')[0]}/admin/ "
              f"(user {ADMIN_USER}, password in {self.credentials_file})")


def main(argv: list[str]) -> int:
    if argv != ["credentials"]:
        print("usage: python -m devstack.keycloak credentials", file=sys.stderr)
        return 2
    try:
        Keycloak(Settings.from_env()).print_credentials()
    except Failure as exc:
        print(f"infra: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
