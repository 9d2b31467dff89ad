"""The edge: Debian's nginx on HOST:PORT, from infra/nginx/nginx.conf.template (rendered by
devstack.edge_config), in front of the gunicorn that `make run` starts on APP_BIND. It daemonizes
itself; a running one is reused, and reloaded when the rendering changed."""

import hashlib
import os
import re
import signal
import subprocess

import psutil

from config import Config
from devstack import edge_config
from devstack.install import ensure_package
from devstack.output import Failure, failure_with_log, say
from devstack.process import pid_of, port_open, run_logged, runs, stop, wait_for
from devstack.settings import Settings
from devstack.status import Status


class Nginx:
    name = "nginx"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "nginx"
        self.conf = self.dir / "nginx.conf"
        self.pid_file = self.dir / "run" / "nginx.pid"
        self.log = self.dir / "logs" / "error.log"
        self.cache = settings.edge_cache_dir

    def our_pid(self) -> int | None:
        return pid_of(self.pid_file, runs("-c", str(self.conf)))

    def listen(self) -> str:
        """HOST:PORT as rendered (config.py's defaults apply)."""
        try:
            match = re.search(r"^\s*listen (\S+?)[\s;]", self.conf.read_text(), re.MULTILINE)
        except OSError:
            return ""
        return match[1] if match else ""

    def _probe(self) -> tuple[str, int]:
        host, port = self.listen().rsplit(":", 1)
        host = {"0.0.0.0": "127.0.0.1", "[::]": "::1"}.get(host, host.strip("[]"))
        return host, int(port)

    # --- the service interface -------------------------------------------------------------------

    def prepare(self) -> None:
        ensure_package("nginx", "nginx", self.settings.logs)
        # The edge hashes bearer tokens with set-misc's HMAC (see the template).
        ensure_package(edge_config.SET_MISC_MODULE, "libnginx-mod-http-set-misc", self.settings.logs)
        try:
            edge_config.prepare_dirs(self.dir, self.cache)
        except PermissionError as exc:
            raise Failure(f"the edge's directories: {exc}") from None

    def launch(self) -> None:
        """Nothing to wait for: it starts in ready(), last."""

    def ready(self) -> None:
        pid = self.our_pid()
        if pid:
            # Reused as it is; a changed setting (a new rendering) is applied with a reload, which
            # keeps open connections and the cache.
            before = self._digest()
            self._render()
            if self._digest() != before:
                os.kill(pid, signal.SIGHUP)
                say(f"nginx: already running (ours, pid {pid}); reloaded with the changed settings")
            else:
                say(f"nginx: already running at {self.listen()} (ours, pid {pid})")
            return
        self._render()
        self._stop_orphans()
        if port_open(*self._probe()):
            raise Failure(f"{self.listen()} is taken by another program (a gunicorn started before the edge "
                          "existed?); stop it, or set PORT for the edge (and APP_BIND for gunicorn)")
        say(f"nginx: starting at {self.listen()} (cache {self.cache})")
        if not run_logged(["nginx", "-p", str(self.dir), "-c", str(self.conf)], self.log, timeout_s=30):
            raise failure_with_log("nginx did not start", self.log)
        if not wait_for(lambda: self.our_pid() and port_open(*self._probe()), 10, 0.1):
            raise failure_with_log("nginx did not start within 10 s", self.log)
        say(f"nginx: up at {self.listen()} (ours, pid {self.our_pid()})")

    def down(self) -> None:
        # QUIT is nginx's graceful stop: it finishes the requests in flight.
        stop("nginx", self.our_pid(), signal.SIGQUIT, 15, signal.SIGTERM)

    def status(self) -> Status:
        pid = self.our_pid()
        if pid:
            return Status("up", self.listen() or "-", f"ours, pid {pid}",
                          f"conf {self.conf}  log {self.dir / 'logs'}  cache {self.cache}")
        return Status("down", self.listen() or "-", "-")

    def _stop_orphans(self) -> None:
        """Workers outlive a master killed with SIGKILL, and keep its port: with no master of ours
        running, an nginx process that holds a log of ours open is a leftover of ours."""
        logs = str(self.dir / "logs") + os.sep

        def holds_our_logs(process: psutil.Process) -> bool:
            try:
                return any(file.path.startswith(logs) for file in process.open_files())
            except psutil.Error:
                return False

        orphans = [p.pid for p in psutil.process_iter(["name"])
                   if (p.info["name"] or "").startswith("nginx") and holds_our_logs(p)]
        if orphans:
            say(f"nginx: {len(orphans)} process(es) of ours outlived their master (pids "
                f"{', '.join(map(str, orphans))})")
        for pid in orphans:
            stop("nginx", pid, signal.SIGTERM, 5, signal.SIGKILL)
        # A master killed with SIGKILL leaves its unix socket behind, and the next one can't bind it.
        edge_config.misses_socket(self.cache).unlink(missing_ok=True)

    # --- its configuration ------------------------------------------------------------------------

    def _digest(self) -> str:
        return hashlib.sha1(self.conf.read_bytes()).hexdigest() if self.conf.exists() else ""

    def _render(self) -> None:
        try:
            edge_config.write_config(Config, self.dir, self.cache)
        except (ValueError, PermissionError) as exc:
            raise Failure(f"could not render the nginx config: {exc}") from None
        link = self.dir / "cache"
        if self.cache != link and (link.is_symlink() or not os.path.lexists(link)):
            link.unlink(missing_ok=True)
            link.symlink_to(self.cache)  # for people looking for the cache; never followed by us
        check = self.dir / "logs" / "check.log"
        with check.open("wb") as out:
            tested = subprocess.run(["nginx", "-t", "-q", "-p", str(self.dir), "-c", str(self.conf)],
                                    stdout=out, stderr=subprocess.STDOUT)
        if tested.returncode != 0:
            raise failure_with_log(f"nginx refuses the rendered {self.conf}", check)



