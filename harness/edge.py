"""Runs the edge (nginx with the config rendered from infra/nginx/nginx.conf.template by
devstack.edge_config, as `make infra` does) in front of a gunicorn."""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness import ROOT
from harness.service import free_port
from harness.waiting import wait_until


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


class Edge:
    """One nginx master (daemon off, so the test owns its process) on a free port of 127.0.0.1."""

    def __init__(self, upstream: str, work_dir: Path, env: dict[str, str] | None = None,
                 credentials: Callable[[], dict[str, str]] | None = None) -> None:
        """`credentials()`: headers that every get() sends unless told otherwise (a bearer token)."""
        self.credentials = credentials
        self.port = free_port()
        self.prefix = work_dir / f"edge-{self.port}"
        # tmpfs, as `make infra` chooses, when there is one.
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.cache_dir = Path(tempfile.mkdtemp(prefix="order-edge-", dir=shm))
        self.env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "APP_BIND": upstream,
                    **(env or {})}
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10) -> "Edge":
        nginx = nginx_binary()
        assert nginx, "nginx is not installed; `make infra` installs it"
        # In a process of its own: the settings are this edge's environment, not the tests'.
        subprocess.run([sys.executable, "-m", "devstack.edge_config", "--prefix", str(self.prefix),
                        "--cache-dir", str(self.cache_dir)], cwd=ROOT, env=self.env, check=True,
                       capture_output=True)
        log = (self.prefix / "logs" / "stderr.log").open("ab")
        self.process = subprocess.Popen(
            [nginx, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), "-g", "daemon off;"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self._accepts() or self.process.poll() is not None, timeout_s,
                   f"nginx listens on {self.port} (logs in {self.prefix / 'logs'})")
        assert self.process.poll() is None, f"nginx exited; see {self.prefix / 'logs'}"
        return self

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET",
            body: bytes | None = None, source: str | None = None,
            timeout_s: float = 5, anonymous: bool = False) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection; `source` binds the client's address (127.0.0.2…). With
        the credentials, unless `anonymous` (or `headers` has an Authorization of its own)."""
        sent = {**(self.credentials() if self.credentials and not anonymous else {}), **(headers or {})}
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s,
                                                source_address=(source, 0) if source else None)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def access_log(self) -> str:
        path = self.prefix / "logs" / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # nginx: fast shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.cache_dir, ignore_errors=True)
