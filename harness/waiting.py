"""Polling with a deadline: how the tests and the benchmarks wait for a service to get somewhere."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float, message: str, interval_s: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail with `message`
    at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s: {message}")
        time.sleep(interval_s)
