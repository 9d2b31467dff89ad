"""Every rule of the contract, broken one at a time: the record is rejected and the error names the
field path. Pure logic, so no services are needed."""

import copy
import json
import random
import threading

import pytest

from app.ingest.records import ErrorType
from app.seed import OrderFactory, invalid_record
from app.validation import parse_rfc3339, validate_order
from app.validation.schema import ITEM_SCHEMA
from app.validation.shape import check_shape
from app.validation.validator import _FLAT_ORDER_SCHEMA, OrderValidator, _flat_document
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


class _CerberusOwnStep(OrderValidator):
    """The same validator with Cerberus' own per-field step for every field."""

    DIRECT_RULES = frozenset()


HOSTILE_VALUES = [
    None, True, False, 0, -1, 100, 101, INT64_MAX, INT64_MAX + 1, 10**30, 1.5, float("nan"), float("inf"),
    "", "x", "USD", "usd", "+79990000000", "a@b.co", "a b@c.d", "x" * 501, "\x00", "a\ud800b", "uid\n",
    "2021-11-26T06:22:19Z", "2021-02-30T12:00:00Z", "1637907739", [], ["x"], {}, {"a": 1},
]


def _errors(validator_class: type, schema: dict, document: dict) -> tuple[bool, dict]:
    validator = validator_class(schema, allow_unknown=False)
    valid = validator.validate(document, update=True, normalize=False)
    if validator_class is OrderValidator:
        # The comparison means something only if the shortcut ran: it overrides a private method
        # of Cerberus, which a new version may rename (both sides would then be Cerberus' own).
        assert any(plan for _, plan in validator._plans.values()), "the direct per-field step never ran"
    return valid, validator.errors


@pytest.mark.parametrize("schema, document", [
    (_FLAT_ORDER_SCHEMA, _flat_document(EXAMPLE)), (ITEM_SCHEMA, EXAMPLE["items"][0]),
], ids=["order", "item"])
def test_the_direct_per_field_step_answers_as_cerberus_own_does(schema, document):
    """OrderValidator's shortcut past Cerberus' per-field queue (app/validation/validator.py) gives
    the same verdict and the same messages as Cerberus' own step, for every field and every kind of
    value, one field wrong or all of them at once."""
    expected = _errors(_CerberusOwnStep, schema, document)
    assert _errors(OrderValidator, schema, document) == expected == (True, {})
    for field in schema:
        for value in HOSTILE_VALUES:
            changed = {**document, field: value}
            assert _errors(OrderValidator, schema, changed) == _errors(_CerberusOwnStep, schema, changed)
    for value in HOSTILE_VALUES:
        everything = dict.fromkeys(schema, value)
        assert _errors(OrderValidator, schema, everything) == _errors(_CerberusOwnStep, schema, everything)


def test_the_direct_per_field_step_rejects_the_generated_invalid_orders_as_cerberus_does():
    rng = random.Random(13)
    base = next(OrderFactory(seed=13).orders(1))
    compared = 0
    for _ in range(600):
        kind, raw = invalid_record(rng, base)
        if kind != ErrorType.INVALID_ORDER:
            continue
        document = json.loads(raw)
        if not isinstance(document, dict) or check_shape(document):
            continue
        for schema, part in [(_FLAT_ORDER_SCHEMA, _flat_document(document)),
                             *((ITEM_SCHEMA, item) for item in document["items"][:3])]:
            assert _errors(OrderValidator, schema, part) == _errors(_CerberusOwnStep, schema, part)
            compared += 1
    assert compared > 100
