"""The consumer's backoff, without services: it grows, stays under its cap and never fails, however
long an outage lasts."""

from app.ingest.consumer import Backoff


def test_the_delay_doubles_up_to_the_cap_with_jitter():
    backoff = Backoff(first_s=0.2, cap_s=10.0)
    delays = [backoff.next_delay() for _ in range(12)]
    assert 0.1 <= delays[0] <= 0.2
    assert 0.2 <= delays[1] <= 0.4
    assert all(5.0 <= delay <= 10.0 for delay in delays[6:])
    backoff.reset()
    assert backoff.next_delay() <= 0.2


def test_hours_of_failures_keep_the_delay_at_its_cap():
    """A delay per failure for hours: about a thousand attempts at 10 s each. 2 ** 1024 does not fit
    a float, so a backoff computed that way raised OverflowError inside the consumer's error handling."""
    backoff = Backoff(first_s=0.2, cap_s=10.0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert backoff.attempt == 5000
    assert 5.0 <= delay <= 10.0
