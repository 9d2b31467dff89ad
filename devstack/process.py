"""Starting, checking and stopping the stack's processes.

They run detached, in a session of their own, so that they outlive `make` and CI's shell and are
reused by later runs and by other clones that share the home. A pid file says which process is
ours, and is believed only while that process is alive (not a zombie) and runs what we started:
pids are reused. Runs on one home are serialised by a lock file in it."""

import fcntl
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from devstack.output import Failure, say


def wait_for(condition: Callable[[], object], seconds: float, interval_s: float = 0.2) -> bool:
    """Poll `condition` until it is true (True) or `seconds` have passed (False)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
    return True


def alive(pid: int) -> bool:
    """kill -0 also succeeds for a zombie, which is what a killed server stays until its parent
    reaps it: that is not a running server."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def runs(*args: str) -> Callable[[psutil.Process], bool]:
    """A check that a process's command line holds `args`, one after the other."""
    def check(process: psutil.Process) -> bool:
        line = process.cmdline()
        return any(line[i:i + len(args)] == list(args) for i in range(len(line)))
    return check


def named(prefix: str) -> Callable[[psutil.Process], bool]:
    return lambda process: process.name().startswith(prefix)


def read_pid(pid_file: Path, line: int = 0) -> int | None:
    try:
        text = pid_file.read_text().splitlines()[line].strip()
    except (OSError, IndexError):
        return None
    return int(text) if text.isdecimal() else None


def pid_of(pid_file: Path, is_ours: Callable[[psutil.Process], bool]) -> int | None:
    """The pid that `pid_file` names, if that process is alive and `is_ours` says it is ours."""
    pid = read_pid(pid_file)
    if pid is None or not alive(pid):
        return None
    try:
        return pid if is_ours(psutil.Process(pid)) else None
    except psutil.Error:
        return None


def find(is_ours: Callable[[psutil.Process], bool]) -> int | None:
    """The pid of a live process that `is_ours` recognises, looked for among all."""
    for process in psutil.process_iter():
        try:
            if alive(process.pid) and is_ours(process):
                return process.pid
        except psutil.Error:
            continue
    return None


def start_detached(argv: list[str], log: Path, **options) -> int:
    """Start `argv` in a session of its own, its output appended to `log`, reading nothing; it
    inherits no descriptor of ours (the lock in particular: it must not hold it while it runs)."""
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True, **options)
    return process.pid


def run_logged(argv: list[str], log: Path, timeout_s: float | None = None, **options) -> bool:
    """Run `argv` to its end, its output appended to `log`; True when it succeeded."""
    with log.open("ab") as out:
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True, timeout=timeout_s, **options).returncode == 0
        except subprocess.TimeoutExpired:
            return False


def stop(name: str, pid: int | None, first: signal.Signals, seconds: float, last: signal.Signals) -> None:
    """Send `first`, wait up to `seconds` for the process to end, then send `last`; None is a
    process of ours that does not run."""
    if pid is None:
        say(f"{name}: ours is not running")
        return
    say(f"{name}: stopping (pid {pid})")
    with suppress(ProcessLookupError):
        os.kill(pid, first)
    if not wait_for(lambda: not alive(pid), seconds, 0.1):
        say(f"{name}: still running after {seconds:g} s, sending {last.name} (pid {pid})")
        with suppress(ProcessLookupError):
            os.kill(pid, last)


def port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def rotate_log(path: Path) -> None:
    """Keep one previous log, so that a failed start can be compared with the last good one."""
    if path.exists() and path.stat().st_size:
        path.replace(path.with_name(path.name + ".1"))


@contextmanager
def home_lock(path: Path, seconds: float = 300) -> Iterator[None]:
    """Two clones running `make infra` at once would otherwise both initdb, format or start."""
    with path.open("a") as lock:
        def taken() -> bool:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        if not taken():
            say(f"waiting for another `make infra` on this home (it holds {path})")
            if not wait_for(taken, seconds, 0.5):
                raise Failure(f"another `make infra` has held {path} for {seconds / 60:g} minutes")
        yield


def server_user_options(user: str) -> dict:
    """As root, subprocess options that run a command as `user` with its groups, as runuser does
    (PostgreSQL refuses to run as root); otherwise none."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid,
            "extra_groups": os.getgrouplist(user, entry.pw_gid)}
