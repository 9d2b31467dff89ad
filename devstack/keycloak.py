"""The local OpenID Connect provider: a real Keycloak, started without Docker like the other
services of `make infra`.

    python -m devstack.keycloak up|down|status|credentials

- up: fetch Keycloak from Maven Central (once), make the development secrets (once), import the
  realm (infra/keycloak/realm.json) and start it; a running one is reused. Waits until the realm's
  discovery document is served, with a line of progress every few seconds.
- down: stop the Keycloak that `up` started (never one it did not start).
- status: one line, like scripts/infra.sh's; exit 0 when up, 3 otherwise.
- credentials: the development users and how to get a token (what `make run` prints).

Where it listens and which realm it serves come from AUTH_ISSUER (config.py), so the service and
its provider can't disagree. If AUTH_ISSUER is not on this machine, nothing is started: the
service then uses that provider as it is. Everything lives under $ORDER_SERVICE_HOME/keycloak
(the server, its H2 data, the pid file, the development secrets) and logs/keycloak.log.

Self-contained on purpose (standard library and config.py only): the lead plugs it into devstack/.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import DEV_SECRETS, dev_secrets_dir, env_int, env_str, order_service_home  # noqa: E402

VERSION = "26.4.0"
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{VERSION}:tar.gz"
REALM_TEMPLATE = ROOT / "infra" / "keycloak" / "realm.json"
# Small on purpose: 2 cores and 24 GiB shared by every service and engineer (its resident size
# and start-up times are in bench/README.md).
HEAP = "-Xms64m -Xmx384m -XX:MaxMetaspaceSize=256m -XX:+ExitOnOutOfMemoryError"
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 30
# Secrets made once per $ORDER_SERVICE_HOME; the app reads the two client secrets from the same
# files (config.DEV_SECRETS), the tests read the rest.
ADMIN_USER = "admin"
USERS = {"developer": "every scope: orders:read, orders:list, orders:pii (asked for at sign-in)",
         "viewer": "orders:read only: one order at a time, personal fields masked"}


def say(message: str) -> None:
    print(f"infra: {message}", flush=True)


def die(message: str) -> None:
    print(f"infra: error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


@dataclass(frozen=True)
class Layout:
    """Where everything is, from the settings."""

    home: Path
    host: str
    port: int
    management_port: int
    realm: str
    issuer: str

    @classmethod
    def from_settings(cls) -> Layout:
        issuer = env_str("AUTH_ISSUER").rstrip("/")
        parts = urlsplit(issuer)
        realm = parts.path.rpartition("/realms/")[2]
        if parts.scheme not in ("http", "https") or not parts.hostname or "/" in realm or not realm:
            die(f"AUTH_ISSUER={issuer!r} is not a Keycloak realm's issuer (http://host:port/realms/NAME)")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(order_service_home() / "keycloak", parts.hostname, port,
                   env_int("KEYCLOAK_MANAGEMENT_PORT"), realm, issuer)

    @property
    def local(self) -> bool:
        return self.host in ("127.0.0.1", "localhost")

    @property
    def install_dir(self) -> Path:
        return self.home / f"keycloak-{VERSION}"

    @property
    def pid_file(self) -> Path:
        return self.home / "keycloak.pid"

    @property
    def log(self) -> Path:
        return order_service_home() / "logs" / "keycloak.log"

    @property
    def credentials_file(self) -> Path:
        return self.home / "dev-credentials.json"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


# --- processes ------------------------------------------------------------------------------------

def is_alive(pid: int) -> bool:
    """kill -0 also succeeds for a zombie: read the state instead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def our_pid(layout: Layout) -> int | None:
    """The pid of the Keycloak that `up` started from this home, or None; a stale pid file goes."""
    try:
        pid = int(layout.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        layout.pid_file.unlink(missing_ok=True)
        return None
    # kc.sh execs java with -Dkc.home.dir=<the install dir>: a recycled pid is some other program.
    if is_alive(pid) and f"-Dkc.home.dir={layout.install_dir}" in cmdline.replace("'", ""):
        return pid
    layout.pid_file.unlink(missing_ok=True)
    return None


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def serves_realm(layout: Layout) -> bool:
    """The realm's discovery document is served, with the issuer we expect."""
    try:
        with urllib.request.urlopen(layout.discovery_url, timeout=3) as response:
            return json.load(response).get("issuer") == layout.issuer
    except (OSError, ValueError, urllib.error.URLError):
        return False


# --- fetching and preparing -----------------------------------------------------------------------

def fetch(layout: Layout) -> None:
    """Keycloak's distribution from Maven Central (the only way here), unpacked once."""
    if (layout.install_dir / "bin" / "kc.sh").is_file():
        return
    if shutil.which("mvn") is None:
        die("mvn not found: it fetches Keycloak (apt-get install -y maven)")
    download = layout.home / "download"
    maven_log = order_service_home() / "logs" / "maven-keycloak.log"
    say(f"Keycloak: fetching {ARTIFACT} (160 MB) with Maven (once; log {maven_log})")
    with maven_log.open("w") as log:
        done = subprocess.run(
            ["mvn", "-B", "-ntp", f"-Dmaven.repo.local={order_service_home() / 'm2'}", "dependency:copy",
             f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={download}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    archive = download / f"keycloak-quarkus-dist-{VERSION}.tar.gz"
    if done.returncode != 0 or not archive.is_file():
        die(f"Maven could not fetch Keycloak; read {maven_log}")
    say(f"Keycloak: unpacking into {layout.install_dir}")
    unpacking = layout.home / "unpacking"
    shutil.rmtree(unpacking, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(unpacking, filter="data")
    (unpacking / f"keycloak-{VERSION}").rename(layout.install_dir)
    shutil.rmtree(unpacking, ignore_errors=True)
    shutil.rmtree(download, ignore_errors=True)


def dev_credentials(layout: Layout) -> dict[str, str]:
    """The development secrets, made once (random, mode 0600) and kept: the admin's password, the
    users' passwords and the two clients' secrets. The clients' secrets are also written one per
    file where the app looks for them (config.DEV_SECRETS)."""
    path = layout.credentials_file
    if path.is_file():
        credentials = json.loads(path.read_text())
    else:
        credentials = {"admin": secrets.token_urlsafe(18),
                       **{f"user:{name}": secrets.token_urlsafe(12) for name in USERS},
                       **{name: secrets.token_urlsafe(32) for name in DEV_SECRETS}}
        layout.home.mkdir(parents=True, exist_ok=True)
        write_private(path, json.dumps(credentials, indent=2) + "\n")
    directory = dev_secrets_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in DEV_SECRETS:
        write_private(directory / name, credentials[name] + "\n")
    return credentials


def write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_text(text)
    tmp.replace(path)


def rendered_realm(layout: Layout, credentials: dict[str, str]) -> str:
    return Template(REALM_TEMPLATE.read_text()).substitute(
        REALM=layout.realm, AUDIENCE=env_str("AUTH_AUDIENCE"),
        WEB_CLIENT_ID=env_str("AUTH_WEB_CLIENT_ID"), WEB_CLIENT_SECRET=credentials["AUTH_WEB_CLIENT_SECRET"],
        CLI_CLIENT_ID=env_str("AUTH_CLI_CLIENT_ID"), CLI_CLIENT_SECRET=credentials["AUTH_CLI_CLIENT_SECRET"],
        DEVELOPER_PASSWORD=credentials["user:developer"], VIEWER_PASSWORD=credentials["user:viewer"])


def render_realm(layout: Layout, credentials: dict[str, str]) -> None:
    """infra/keycloak/realm.json with this home's secrets, where `--import-realm` finds it."""
    text = rendered_realm(layout, credentials)
    json.loads(text)  # a value that broke the JSON would fail here, not inside Keycloak
    target = layout.install_dir / "data" / "import" / "realm.json"
    if target.is_file() and target.read_text() != text:
        # Keycloak imports a realm once and keeps it: a changed realm.json needs a fresh database
        # (it holds nothing but the realm and its sessions).
        say("Keycloak: infra/keycloak/realm.json changed; its database is made again from it")
        shutil.rmtree(layout.install_dir / "data" / "h2", ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_private(target, text)


def realm_changed(layout: Layout) -> bool:
    target = layout.install_dir / "data" / "import" / "realm.json"
    return not target.is_file() or target.read_text() != rendered_realm(layout, dev_credentials(layout))


# --- commands -------------------------------------------------------------------------------------

def up() -> None:
    layout = Layout.from_settings()
    if not layout.local:
        if not serves_realm(layout):
            die(f"the provider at AUTH_ISSUER={layout.issuer} does not serve its discovery document "
                f"({layout.discovery_url}); check AUTH_ISSUER or start that provider")
        say(f"Keycloak: using the provider at {layout.issuer} (not on this machine, not started here)")
        return
    layout.home.mkdir(parents=True, exist_ok=True)
    (order_service_home() / "logs").mkdir(parents=True, exist_ok=True)
    pid = our_pid(layout)
    if pid is not None and realm_changed(layout):
        say("Keycloak: infra/keycloak/realm.json changed since it started; restarting it")
        stop(layout, pid)
        pid = None
    if pid is not None:
        wait_ready(layout, pid)
        say(f"Keycloak: already running at {layout.issuer} (ours, pid {pid})")
        return
    for port in (layout.port, layout.management_port):
        if port_open("127.0.0.1", port):
            if port == layout.port and serves_realm(layout):
                say(f"Keycloak: using the provider already at {layout.issuer} (not started by this script)")
                return
            die(f"port {port} on 127.0.0.1 is taken by another program; stop it, or choose another port "
                f"(AUTH_ISSUER's port for Keycloak, KEYCLOAK_MANAGEMENT_PORT for its management interface)")
    check_java()
    fetch(layout)
    render_realm(layout, dev_credentials(layout))
    pid = start(layout)
    wait_ready(layout, pid)
    say(f"Keycloak: up at {layout.issuer} (ours, pid {pid})")


def check_java() -> None:
    if shutil.which("java") is None:
        die("java not found: Keycloak needs Java 17+ (apt-get install -y openjdk-17-jre-headless)")


def start(layout: Layout) -> int:
    credentials = json.loads(layout.credentials_file.read_text())
    if layout.log.exists() and layout.log.stat().st_size:
        layout.log.replace(layout.log.with_suffix(".log.1"))
    say(f"Keycloak: starting at {layout.issuer} (data {layout.install_dir / 'data'}, log {layout.log})")
    env = {**os.environ, "JAVA_OPTS_KC_HEAP": HEAP,
           # The first start creates this temporary admin; later starts ignore it.
           "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER, "KC_BOOTSTRAP_ADMIN_PASSWORD": credentials["admin"]}
    command = [str(layout.install_dir / "bin" / "kc.sh"), "start-dev", "--import-realm",
               f"--http-host={layout.host}", f"--http-port={layout.port}",
               f"--hostname={layout.issuer.rpartition('/realms/')[0]}",
               f"--http-management-port={layout.management_port}", "--health-enabled=true"]
    with layout.log.open("ab") as log:
        # A session of its own: it must outlive the shell (and process group) that ran `up`.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True, close_fds=True)
    layout.pid_file.write_text(f"{process.pid}\n")
    return process.pid


def wait_ready(layout: Layout, pid: int) -> None:
    started = time.monotonic()
    next_note = started + 10
    while not serves_realm(layout):
        if not is_alive(pid):
            layout.pid_file.unlink(missing_ok=True)
            tail(layout.log)
            die(f"Keycloak exited while starting; read {layout.log}")
        now = time.monotonic()
        if now - started > START_TIMEOUT_S:
            tail(layout.log)
            die(f"Keycloak did not serve {layout.discovery_url} within {START_TIMEOUT_S} s; "
                f"read {layout.log}")
        if now >= next_note:
            say(f"Keycloak: starting ({now - started:.0f} s; the first start imports the realm)")
            next_note = now + 10
        time.sleep(0.5)


def tail(path: Path, lines: int = 15) -> None:
    if path.exists():
        for line in path.read_text(errors="replace").splitlines()[-lines:]:
            print(f"    {line}", file=sys.stderr)


def down() -> None:
    layout = Layout.from_settings()
    pid = our_pid(layout)
    if pid is None:
        say("Keycloak: ours is not running")
        return
    stop(layout, pid)


def stop(layout: Layout, pid: int) -> None:
    say(f"Keycloak: stopping (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_alive(pid):
        say(f"Keycloak: still running after {STOP_TIMEOUT_S} s, sending SIGKILL (pid {pid})")
        os.kill(pid, signal.SIGKILL)
    layout.pid_file.unlink(missing_ok=True)


def status() -> int:
    layout = Layout.from_settings()
    pid = our_pid(layout)
    files = f"data {layout.install_dir / 'data'}  log {layout.log}"
    if pid is not None:
        state, who = ("up" if serves_realm(layout) else "starting"), f"ours, pid {pid}"
    elif serves_realm(layout):
        state, who, files = "up", "external, not started by this script", ""
    else:
        state, who, files = "down", "-", ""
    print(f"infra: keycloak  {state:<8} {layout.host}:{layout.port:<6} {'(' + who + ')':<40} {files}")
    return 0 if state == "up" else 3


def credentials() -> None:
    """What `make run` prints: who can sign in, and how to get a token."""
    layout = Layout.from_settings()
    if not layout.credentials_file.is_file():
        print(f"No development users: the provider at {layout.issuer} was not started by `make infra`.")
        return
    stored = json.loads(layout.credentials_file.read_text())
    print(f"Sign in on the web page with a development user (provider: {layout.issuer}):")
    for name, what in USERS.items():
        print(f"  {name:<10} password {stored['user:' + name]:<20} {what}")
    print("A token for curl:  TOKEN=$(.venv/bin/flask auth token --scope orders:read --scope orders:pii)")
    print(f"Keycloak's admin console: {layout.issuer.rpartition('/realms/')[0]}/admin/ "
          f"(user {ADMIN_USER}, password in {layout.credentials_file})")


def main(argv: list[str]) -> int:
    commands = {"up": up, "down": down, "status": status, "credentials": credentials}
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: python -m devstack.keycloak up|down|status|credentials", file=sys.stderr)
        return 2
    return commands[argv[0]]() or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
