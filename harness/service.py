"""Runs the real service (`gunicorn wsgi:app` with gunicorn.conf.py) as a subprocess, configured
only through the environment."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from harness import ROOT
from harness.waiting import wait_until

if TYPE_CHECKING:  # kafka-python and the app's ingest package are slow to import; types only
    from harness.kafka import Topics

GUNICORN = Path(sys.executable).with_name("gunicorn")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """One gunicorn master with its workers, on a free port of 127.0.0.1."""

    def __init__(self, env: dict[str, str], log_path: Path, args: tuple[str, ...] = ("wsgi:app",),
                 root: Path = ROOT, credentials: Callable[[], dict[str, str]] | None = None,
                 gunicorn: Path = GUNICORN) -> None:
        """`credentials()`: headers that every get() sends unless told otherwise (a bearer token);
        `gunicorn`: the executable (another virtualenv's, to compare versions)."""
        self.credentials = credentials
        self.gunicorn = gunicorn
        self.args = args
        self.root = root
        self.port = free_port()
        self.log_path = log_path
        self.env = {**os.environ, "APP_BIND": f"127.0.0.1:{self.port}", **env}
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> Service:
        """Start gunicorn without waiting for it to answer."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(self.gunicorn), *self.args], cwd=self.root, env=self.env, stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def start(self, timeout_s: float = 30) -> Service:
        """Launch gunicorn and wait until it answers. A start that fails or is interrupted (a
        SIGTERM's SystemExit) stops it: the caller never got the Service to stop."""
        self.launch()
        try:
            wait_until(lambda: self.get("/healthz")[0] == 200 or self._died(), timeout_s,
                       f"gunicorn answered /healthz (log: {self.log_path})")
            assert self.process.poll() is None, f"gunicorn exited; see {self.log_path}"
        except BaseException:
            if not self._died():
                self.stop()
            raise
        return self

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def get(self, path: str, headers: dict[str, str] | None = None,
            anonymous: bool = False) -> tuple[int, dict, bytes]:
        """(status, headers, body); status 0 when nothing answered. With the credentials, unless
        `anonymous` (or `headers` has an Authorization of its own)."""
        sent = {**(self.credentials() if self.credentials and not anonymous else {}), **(headers or {})}
        request = urllib.request.Request(self.url + path, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()
        except OSError:
            return 0, {}, b""

    def rss_bytes(self, pids: list[int] | None = None) -> int:
        """Resident memory of the master and its workers together."""
        total = 0
        for pid in pids or [self.process.pid, *self.worker_pids()]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            line = next((row for row in status.splitlines() if row.startswith("VmRSS:")), "VmRSS: 0 kB")
            total += int(line.split()[1]) * 1024
        return total

    def stop(self, timeout_s: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def wait_for_workers(self, count: int, timeout_s: float = 30) -> list[int]:
        """The pids of the master's `count` workers, once it has forked them all."""
        def all_forked() -> list[int] | None:
            pids = self.worker_pids()
            return pids if len(pids) == count else None
        return wait_until(all_forked, timeout_s, f"the master forked {count} workers (log: {self.log_path})")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def connections_per_worker(self) -> list[int]:
        """Established client connections on the service's port, for each worker, fewest first."""
        counts = []
        for pid in self.worker_pids():
            held = psutil.Process(pid).net_connections(kind="tcp")
            ours = [c for c in held if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == self.port]
            counts.append(len(ours))
        return sorted(counts)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout_s: float) -> int:
        return self.process.wait(timeout=timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            for pid in self.worker_pids():
                os.kill(pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait(timeout=10)


def exit_through_finally_on_sigterm() -> None:
    """A run stopped by SIGTERM (a `kill`, a CI timeout) exits as Python does on an exception, so
    its `finally` blocks still stop its services and drop its databases; by default the signal kills
    the interpreter on the spot and leaves them running."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def service_env(database_url: str, topics: Topics, **extra: str) -> dict[str, str]:
    """The environment of a service on `database_url` and `topics`: 2 workers, small batches,
    no cache warm-up; `extra` overrides any of it."""
    return {
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap,
        "KAFKA_TOPIC": topics.orders,
        "KAFKA_DLQ_TOPIC": topics.dlq,
        "KAFKA_GROUP_ID": topics.group,
        "WEB_CONCURRENCY": "2",
        "CONSUMER_BATCH_SIZE": "100",
        "CONSUMER_BATCH_WAIT_MS": "100",
        "CACHE_WARMUP": "0",
        **extra,
    }
