"""Every rule of the contract, broken one at a time: the record is rejected and the error names the
field path. Pure logic, so no services are needed."""

import copy
import json
import random
import threading
from typing import Any

import pytest

from app.ingest.records import ErrorType
from app.seed import OrderFactory, invalid_record
from app.validation import parse_rfc3339, validate_order
from app.validation.shape import check_shape
from app.validation.validator import _FLAT_ORDER_SCHEMA, _ITEM_SCHEMA, OrderValidator, _flat_document
from tests.helpers import contract_example

EXAMPLE = contract_example()
INT64_MAX = 2**63 - 1


def with_change(path: str, value: Any = None, *, delete: bool = False) -> dict:
    """The example order with one field (dotted path, list indexes as numbers) changed or removed."""
    order = copy.deepcopy(EXAMPLE)
    *parents, last = path.split(".")
    target: Any = order
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    key: Any = int(last) if isinstance(target, list) else last
    if delete:
        del target[key]
    else:
        target[key] = value
    return order


# (case id, path to change, new value, field path expected in the error)
REJECTIONS = [
    ("uid empty", "order_uid", "", "order_uid"),
    ("uid too long", "order_uid", "a" * 65, "order_uid"),
    ("uid bad char", "order_uid", "abc/def", "order_uid"),
    ("uid trailing newline", "order_uid", "abc\n", "order_uid"),
    ("uid not string", "order_uid", 12345, "order_uid"),
    ("track empty", "track_number", "", "track_number"),
    ("track too long", "track_number", "T" * 256, "track_number"),
    ("entry too long", "entry", "E" * 11, "entry"),
    ("delivery not object", "delivery", "nowhere", "delivery"),
    ("delivery null", "delivery", None, "delivery"),
    ("payment null", "payment", None, "payment"),
    ("items null", "items", None, "items"),
    ("item null", "items.0", None, "items.0"),
    ("name null", "delivery.name", None, "delivery.name"),
    ("name empty", "delivery.name", "", "delivery.name"),
    ("phone letters", "delivery.phone", "+97200abc00", "delivery.phone"),
    ("phone too short", "delivery.phone", "+1234", "delivery.phone"),
    ("phone too long", "delivery.phone", "+" + "1" * 21, "delivery.phone"),
    ("phone arabic digits", "delivery.phone", "+٩٧٢٠٠٠٠٠٠٠", "delivery.phone"),
    ("zip too long", "delivery.zip", "1" * 21, "delivery.zip"),
    ("city too long", "delivery.city", "c" * 101, "delivery.city"),
    ("address too long", "delivery.address", "a" * 501, "delivery.address"),
    ("region empty", "delivery.region", "", "delivery.region"),
    ("email without at", "delivery.email", "test.gmail.com", "delivery.email"),
    ("email too long", "delivery.email", "a" * 250 + "@b.com", "delivery.email"),
    ("transaction empty", "payment.transaction", "", "payment.transaction"),
    ("request_id too long", "payment.request_id", "r" * 256, "payment.request_id"),
    ("currency lower case", "payment.currency", "usd", "payment.currency"),
    ("currency four letters", "payment.currency", "USDT", "payment.currency"),
    ("provider empty", "payment.provider", "", "payment.provider"),
    ("amount as string", "payment.amount", "1817", "payment.amount"),
    ("amount as float", "payment.amount", 1817.0, "payment.amount"),
    ("amount as boolean", "payment.amount", True, "payment.amount"),
    ("amount negative", "payment.amount", -1, "payment.amount"),
    ("amount past int64", "payment.amount", INT64_MAX + 1, "payment.amount"),
    ("payment_dt negative", "payment.payment_dt", -5, "payment.payment_dt"),
    ("bank too long", "payment.bank", "b" * 101, "payment.bank"),
    ("delivery_cost null", "payment.delivery_cost", None, "payment.delivery_cost"),
    ("goods_total float", "payment.goods_total", 3.5, "payment.goods_total"),
    ("custom_fee string", "payment.custom_fee", "0", "payment.custom_fee"),
    ("items empty", "items", [], "items"),
    ("items too many", "items", [EXAMPLE["items"][0]] * 1001, "items"),
    ("items not a list", "items", {"0": EXAMPLE["items"][0]}, "items"),
    ("item not object", "items.0", "item", "items.0"),
    ("chrt_id string", "items.0.chrt_id", "9934930", "items.0.chrt_id"),
    ("item track empty", "items.0.track_number", "", "items.0.track_number"),
    ("price negative", "items.0.price", -453, "items.0.price"),
    ("rid empty", "items.0.rid", "", "items.0.rid"),
    ("item name too long", "items.0.name", "n" * 501, "items.0.name"),
    ("sale over 100", "items.0.sale", 101, "items.0.sale"),
    ("sale boolean", "items.0.sale", False, "items.0.sale"),
    ("size too long", "items.0.size", "s" * 51, "items.0.size"),
    ("total_price float", "items.0.total_price", 317.5, "items.0.total_price"),
    ("nm_id past int64", "items.0.nm_id", 2**64, "items.0.nm_id"),
    ("brand too long", "items.0.brand", "b" * 256, "items.0.brand"),
    ("status string", "items.0.status", "202", "items.0.status"),
    ("locale too short", "locale", "e", "locale"),
    ("locale too long", "locale", "l" * 11, "locale"),
    ("signature too long", "internal_signature", "s" * 501, "internal_signature"),
    ("customer empty", "customer_id", "", "customer_id"),
    ("delivery_service empty", "delivery_service", "", "delivery_service"),
    ("shardkey too long", "shardkey", "1" * 11, "shardkey"),
    ("sm_id negative", "sm_id", -1, "sm_id"),
    ("date without offset", "date_created", "2021-11-26T06:22:19", "date_created"),
    ("date impossible", "date_created", "2021-13-45T06:22:19Z", "date_created"),
    ("date as unix seconds", "date_created", 1637907739, "date_created"),
    ("date with space", "date_created", "2021-11-26 06:22:19Z", "date_created"),
    ("date out of range in UTC", "date_created", "9999-12-31T23:59:59-12:00", "date_created"),
    ("date year zero", "date_created", "0000-01-01T00:00:00Z", "date_created"),
    ("oof_shard empty", "oof_shard", "", "oof_shard"),
    ("NUL in a string", "delivery.city", "Kiryat\x00Mozkin", "delivery.city"),
    ("lone surrogate", "items.0.name", "Mascaras \ud800", "items.0.name"),
    ("unknown top-level field", "coupon", "FREE", "coupon"),
    ("unknown nested field", "payment.tip", 10, "payment.tip"),
    ("unknown item field", "items.0.color", "red", "items.0.color"),
]

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
    results: list[dict] = []
    orders = [with_change("payment.currency", "usd"), copy.deepcopy(EXAMPLE)] * 50

    def work(order):
        results.append(validate_order(order))

    threads = [threading.Thread(target=work, args=(o,)) for o in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for r in results if r == {}) == 50
    assert sum(1 for r in results if list(r) == ["payment.currency"]) == 50


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
    return valid, validator.errors


@pytest.mark.parametrize("schema, document", [
    (_FLAT_ORDER_SCHEMA, _flat_document(EXAMPLE)), (_ITEM_SCHEMA, EXAMPLE["items"][0]),
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
                             *((_ITEM_SCHEMA, item) for item in document["items"][:3])]:
            assert _errors(OrderValidator, schema, part) == _errors(_CerberusOwnStep, schema, part)
            compared += 1
    assert compared > 100
