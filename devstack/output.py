"""What `make infra` prints: progress on stdout, one error on stderr with what to do next."""

import sys
from pathlib import Path


class Failure(Exception):
    """Stops the command; its message says what went wrong and what to do."""


def say(message: str) -> None:
    print(f"infra: {message}", flush=True)


def warn(message: str) -> None:
    print(f"infra: warning: {message}", file=sys.stderr, flush=True)


def log_tail(path: Path, lines: int = 15) -> None:
    """The end of a log, indented, on stderr: what a failed start said."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return
    for line in text:
        print(f"    {line}", file=sys.stderr)


def failure_with_log(message: str, log: Path) -> Failure:
    log_tail(log)
    return Failure(f"{message}; read {log}")
