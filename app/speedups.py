"""A cost that gunicorn pays at every response, paid once instead. It is installed in gunicorn's
master before it forks (gunicorn.conf.py), so every worker has it; the figures are in
bench/README.md ("the Date header once a second").

- gunicorn formats each response's Date with `email.utils.formatdate` (`gunicorn.util.http_date`).
  The header counts whole seconds (RFC 9110, 5.6.7), so every response within one second carries
  the same text; nginx, Go's net/http and Node format it once a second for that reason.
"""

import time
from collections.abc import Callable

DateFormatter = Callable[..., str]


def once_a_second(http_date: DateFormatter, clock: Callable[[], float] = time.time) -> DateFormatter:
    """`http_date` for the current time, formatted when the second changes; a given timestamp is
    formatted as before. Threads share the one (second, text) pair, replaced whole."""
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

