"""Two costs that gunicorn and prometheus-client pay at every response, paid once instead. Both are
installed in gunicorn's master before it forks (gunicorn.conf.py), so every worker has them; the
figures are in bench/README.md ("the Date header once a second", "the process id kept").

- gunicorn formats each response's Date with `email.utils.formatdate` (`gunicorn.util.http_date`).
  The header counts whole seconds (RFC 9110, 5.6.7), so every response within one second carries
  the same text; nginx and Node format it once a second for that reason.
- prometheus-client's multiprocess values ask for the process id at every change, to notice a
  fork. `os.getpid()` is a system call each time.
"""

import os
import time
from collections.abc import Callable

DateFormatter = Callable[..., str]


def once_a_second(http_date: DateFormatter, clock: Callable[[], float] = time.time) -> DateFormatter:
    """`http_date` for the current time, formatted when the second changes; a given timestamp is
    formatted as before. Threads share the one (second, text) pair, replaced whole. The second is
    the clock's, truncated: `formatdate` of the float itself rounds to the microsecond, so in the
    last half microsecond of a second it would already print the next one."""
    latest: tuple[int, str] | None = None

    def date_now(timestamp: float | None = None) -> str:
        nonlocal latest
        if timestamp is not None:
            return http_date(timestamp)
        second = int(clock())
        held = latest
        if held is None or held[0] != second:
            held = latest = (second, http_date(second))
        return held[1]

    date_now.formats_once_a_second = True  # type: ignore[attr-defined]
    return date_now


def format_dates_once_a_second() -> None:
    """Put once_a_second in gunicorn."""
    import gunicorn.util

    if not getattr(gunicorn.util.http_date, "formats_once_a_second", False):
        gunicorn.util.http_date = once_a_second(gunicorn.util.http_date)


def kept_process_id() -> Callable[[], int]:
    """This process's id, read once and again in each child a fork makes (`os.register_at_fork`
    runs for os.fork and for multiprocessing's and gunicorn's forks, which all use it). Each call
    adds a fork hook that stays for the life of the process: call it once."""
    pid = os.getpid()

    def remember() -> None:
        nonlocal pid
        pid = os.getpid()

    os.register_at_fork(after_in_child=remember)
    return lambda: pid


def count_metrics_with_a_kept_process_id() -> None:
    """prometheus-client's multiprocess values (PROMETHEUS_MULTIPROC_DIR set) with kept_process_id
    in place of os.getpid, through the `process_identifier` parameter it offers for that. Only values
    made afterwards use it: call it before the first metric is made."""
    from prometheus_client import values

    multiprocess = getattr(values.ValueClass, "_multiprocess", False)
    if multiprocess and not getattr(values.ValueClass, "keeps_the_process_id", False):
        values.ValueClass = values.MultiProcessValue(process_identifier=kept_process_id())
        values.ValueClass.keeps_the_process_id = True
