"""The scale bench's ingest ratio: each round's large run against the same round's empty one."""

import pytest

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
