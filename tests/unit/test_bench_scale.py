"""The ingest figures of the bench: the rate from the stored batches, and the scale bench's ratio of
each round's large run against the same round's empty one."""

from datetime import UTC, datetime, timedelta

import pytest

from bench.run import batch_rate, steady_batches
from bench.scale import round_ratios


def _ingest(empty_rates, large_rates):
    return {side: {"runs": [{"orders_per_s": rate} for rate in rates]}
            for side, rates in (("empty", empty_rates), ("large", large_rates))}


def test_each_round_is_compared_with_itself():
    # A machine that slows down over the run: each round's large run is set against the same
    # round's empty one, never against another round's.
    assert round_ratios(_ingest([1000, 800, 600], [900, 760, 540])) == [0.9, 0.95, 0.9]


def test_rounds_missing_on_one_side_are_an_error():
    with pytest.raises(ValueError):
        round_ratios(_ingest([1000, 800], [900]))


def _at(seconds):
    return datetime(2026, 12, 4, 12, 0, tzinfo=UTC) + timedelta(seconds=seconds)


def test_the_ingest_rate_runs_from_the_first_batchs_start_to_the_last_ones():
    # Four batches of 100 orders, one every 0.1 s: the first three were stored in 0.3 s.
    batches = [(_at(0.1 * index), 100) for index in range(4)]
    assert batch_rate(batches) == pytest.approx(1000)


def test_too_few_batches_for_a_rate():
    assert batch_rate([(_at(0), 100)]) is None
    assert batch_rate([]) is None


def test_the_rate_leaves_out_the_batches_begun_before_both_workers_consumed():
    # One worker alone at 500 orders/s for a second, then both at 1,000 from the moment the group
    # became stable: the steady rate is the pair's, and a batch begun at that moment counts.
    alone = [(_at(0.2 * index), 100) for index in range(5)]
    both = [(_at(1 + 0.1 * index), 100) for index in range(10)]
    steady = steady_batches(alone + both, since=_at(1))
    assert steady == both
    assert batch_rate(steady) == pytest.approx(1000)
    assert batch_rate(alone + both) < 1000
