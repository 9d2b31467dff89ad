"""Every rule of the contract, broken one at a time: the record is rejected and the error names the
field path. Pure logic, so no services are needed."""

import copy
import threading

import pytest

from app.validation import parse_rfc3339, validate_order
from tests.contract_cases import EXAMPLE, INT64_MAX, REJECTIONS, with_change

MISSING = ["order_uid", "delivery", "delivery.email", "payment.bank", "items.0.rid", "date_created"]


def test_the_contract_example_is_valid():
    assert validate_order(copy.deepcopy(EXAMPLE)) == {}


@pytest.mark.parametrize(
    ("path", "value", "field"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_each_broken_rule_is_rejected_naming_its_field(path, value, field):
    errors = validate_order(with_change(path, value))
    assert list(errors) == [field], errors
    assert all(isinstance(message, str) and message for message in errors[field])


@pytest.mark.parametrize("path", MISSING)
def test_each_missing_field_is_rejected(path):
    errors = validate_order(with_change(path, delete=True))
    assert errors == {path: ["required field"]}


@pytest.mark.parametrize("value", [[], "order", 42, None])
def test_a_json_value_that_is_not_an_object_is_rejected(value):
    assert list(validate_order(value)) == [""]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("payment.request_id", ""),
        ("items.0.size", ""),
        ("items.0.brand", ""),
        ("internal_signature", ""),
        ("payment.amount", 0),
        ("payment.amount", INT64_MAX),
        ("items.0.sale", 100),
        ("order_uid", "x" * 64),
        ("delivery.phone", "12345"),
        ("delivery.city", "Кирьят-Моцкин 🚚"),
        ("date_created", "2021-11-26T06:22:19.123456789+05:30"),
        ("date_created", "2021-11-26t06:22:19z"),
    ],
)
def test_edge_values_inside_the_rules_are_accepted(path, value):
    assert validate_order(with_change(path, value)) == {}


def test_several_errors_are_all_reported():
    order = with_change("payment.currency", "usd")
    order["items"][0]["price"] = "free"
    assert set(validate_order(order)) == {"payment.currency", "items.0.price"}


def test_dates_are_normalised_to_utc_and_microseconds():
    parsed = parse_rfc3339("2021-11-26T06:22:19.1234567+05:30")
    assert parsed.isoformat() == "2021-11-26T00:52:19.123456+00:00"


def test_the_validator_does_not_keep_state_between_records():
    assert validate_order(with_change("payment.currency", "usd"))
    assert validate_order(copy.deepcopy(EXAMPLE)) == {}


def test_validators_are_not_shared_between_threads():
    orders = [with_change("payment.currency", "usd"), copy.deepcopy(EXAMPLE)] * 50
    results: list[dict | None] = [None] * len(orders)
    # Every thread validates only once all of them are ready, so that the validations overlap.
    start_together = threading.Barrier(len(orders))

    def work(index: int) -> None:
        start_together.wait(timeout=30)
        results[index] = validate_order(orders[index])

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(orders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not start_together.broken, "a thread never reached the start"
    # Each thread got its own order's answer: the currency named for the invalid ones, nothing else.
    assert [None if result is None else list(result) for result in results] == [["payment.currency"], []] * 50
