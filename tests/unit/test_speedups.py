"""The Date header formatted once a second, and the process id kept (app/speedups.py)."""

import os
from collections.abc import Callable

import gunicorn.util
from prometheus_client import values

from app.speedups import (
    count_metrics_with_a_kept_process_id,
    format_dates_once_a_second,
    kept_process_id,
    once_a_second,
)
from tests.helpers import in_child

# gunicorn's own formatter, kept before any test installs the cache in its place.
GUNICORN_HTTP_DATE = gunicorn.util.http_date


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counting(calls: list) -> Callable[..., str]:
    def http_date(timestamp=None):
        calls.append(timestamp)
        return GUNICORN_HTTP_DATE(timestamp)
    return http_date


def test_one_second_is_formatted_once_and_reads_as_that_second():
    calls, clock = [], Clock(1_764_892_800.25)
    date_now = once_a_second(counting(calls), clock)
    first = date_now()
    clock.now = 1_764_892_800.99
    assert date_now() == first == "Fri, 05 Dec 2025 00:00:00 GMT"
    assert len(calls) == 1


def test_each_second_reads_as_gunicorn_writes_it_even_when_the_clock_steps_back():
    moments = (1_764_892_800.5, 1_764_892_801.0, 1_764_892_859.9, 1_764_892_800.7)
    calls, clock = [], Clock(moments[0])
    date_now = once_a_second(counting(calls), clock)
    texts = []
    for now in moments:
        clock.now = now
        texts.append(date_now())
    assert texts == [GUNICORN_HTTP_DATE(now) for now in moments]
    assert len(calls) == 4


def test_a_given_timestamp_is_formatted_as_asked_and_leaves_the_current_second_alone():
    calls, clock = [], Clock(1_764_892_800.5)
    date_now = once_a_second(counting(calls), clock)
    now = date_now()
    assert date_now(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert date_now() == now
    assert calls == [1_764_892_800, 0]


def test_gunicorn_gets_the_cache_once_however_often_its_config_is_read(monkeypatch):
    monkeypatch.setattr(gunicorn.util, "http_date", GUNICORN_HTTP_DATE)
    format_dates_once_a_second()
    installed = gunicorn.util.http_date
    format_dates_once_a_second()  # a SIGHUP reads gunicorn.conf.py again
    assert installed is gunicorn.util.http_date is not GUNICORN_HTTP_DATE
    assert installed(0) == GUNICORN_HTTP_DATE(0)


def test_the_kept_process_id_is_each_process_own_after_a_fork():
    """prometheus-client tells the workers' files apart by it: two processes must never share one."""
    read_end, write_end = os.pipe()
    kept = kept_process_id()
    child = os.fork()
    if child == 0:
        in_child(lambda: os.write(write_end, f"{kept()} {os.getpid()}".encode()))
    os.close(write_end)
    try:
        told = os.read(read_end, 100).decode().split()
    finally:
        os.close(read_end)
        os.waitpid(child, 0)
    assert told == [str(child), str(child)]
    assert kept() == os.getpid() != child


def test_metrics_without_multiprocess_mode_are_left_as_they_are(monkeypatch):
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)
    count_metrics_with_a_kept_process_id()
    assert values.ValueClass is values.MutexValue


def test_each_process_counts_in_a_file_of_its_own(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    count_metrics_with_a_kept_process_id()
    installed = values.ValueClass
    count_metrics_with_a_kept_process_id()  # a SIGHUP reads gunicorn.conf.py again
    assert values.ValueClass is installed

    def count_one() -> None:
        values.ValueClass("counter", "reads", "reads_total", (), (), "reads").inc(1)

    count_one()
    child = os.fork()
    if child == 0:
        in_child(count_one)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [f"counter_{os.getpid()}.db", f"counter_{child}.db"])
