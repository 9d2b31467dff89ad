"""The Date header formatted once a second, and the process id kept (app/speedups.py)."""

import os
from email.utils import formatdate

from app.speedups import kept_process_id, once_a_second
from tests.helpers import in_child


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counting(calls: list) -> callable:
    def http_date(timestamp=None):
        calls.append(timestamp)
        return formatdate(timestamp, usegmt=True)
    return http_date


def test_one_second_is_formatted_once_and_reads_as_that_second():
    calls, clock = [], Clock(1_764_892_800.25)
    date_now = once_a_second(counting(calls), clock)
    first = date_now()
    clock.now = 1_764_892_800.99
    assert date_now() == first == "Fri, 05 Dec 2025 00:00:00 GMT"
    assert len(calls) == 1


def test_the_text_changes_with_the_second_even_when_the_clock_steps_back():
    calls, clock = [], Clock(1_764_892_800.5)
    date_now = once_a_second(counting(calls), clock)
    texts = []
    for now in (1_764_892_800.5, 1_764_892_801.0, 1_764_892_859.9, 1_764_892_800.7):
        clock.now = now
        texts.append(date_now())
    assert texts == [formatdate(int(now), usegmt=True)
                     for now in (1_764_892_800, 1_764_892_801, 1_764_892_859, 1_764_892_800)]
    assert len(calls) == 4


def test_a_given_timestamp_is_formatted_as_asked_and_leaves_the_current_second_alone():
    calls, clock = [], Clock(1_764_892_800.5)
    date_now = once_a_second(counting(calls), clock)
    now = date_now()
    assert date_now(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert date_now() == now
    assert calls == [1_764_892_800, 0]


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
