"""The seed generators: reproducible, contract-consistent, and honest about what they produce."""

import json
import random
import re

import pytest

from app.ingest.records import Rejection, decode_order
from app.seed import INVALID_VARIANTS, OrderFactory, edge_case_order, encode, invalid_record
from app.validation import validate_order
from tests.helpers import contract_example

# The contract's rules, written out here (docs/contract/README.md), not read from the code.
UID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
PHONE = re.compile(r"\+?[0-9]{5,20}\Z")
ONE_MIB = 1024 * 1024
# What each invalid variant must be dead-lettered as.
EXPECTED_KIND = {
    **dict.fromkeys(("truncated_json", "not_utf8", "not_json", "deeply_nested"), "invalid_json"),
    **dict.fromkeys(("padded_over_1mib", "max_items_over_1mib", "huge_string"), "too_large"),
    **dict.fromkeys((
        "not_an_object", "missing_field", "extra_field", "wrong_container", "null_value",
        "int_as_string", "float_for_int", "bool_for_int", "negative_int", "int_too_big",
        "sale_out_of_range", "bad_currency", "bad_phone", "bad_email", "bad_order_uid", "nul_char",
        "string_too_long", "string_too_short", "bad_date", "date_without_offset", "zero_items",
        "too_many_items",
    ), "invalid_order"),
}  # fmt: skip


def _batch(seed: int, count: int = 300) -> list[bytes]:
    return [encode(order) for order in OrderFactory(seed).orders(count)]


def test_same_seed_same_orders() -> None:
    assert _batch(1) == _batch(1)


def test_different_seeds_differ() -> None:
    first, second = _batch(1, 50), _batch(2, 50)
    assert not set(first) & set(second)


def test_orders_are_consistent_per_contract() -> None:
    orders = list(OrderFactory(3).orders(500))
    assert len({order["order_uid"] for order in orders}) == 500
    for order in orders:
        payment, items = order["payment"], order["items"]
        assert UID.match(order["order_uid"]) and payment["transaction"] == order["order_uid"]
        assert PHONE.match(order["delivery"]["phone"])
        assert 1 <= len(items) <= 20
        for item in items:
            assert item["track_number"] == order["track_number"]
            assert item["total_price"] == item["price"] * (100 - item["sale"]) // 100
        assert payment["goods_total"] == sum(item["total_price"] for item in items)
        assert payment["amount"] == (
            payment["goods_total"] + payment["delivery_cost"] + payment["custom_fee"]
        )


def test_field_order_follows_the_example() -> None:
    example = contract_example()
    order = OrderFactory(4).order()
    assert list(order) == list(example)
    assert list(order["delivery"]) == list(example["delivery"])
    assert list(order["payment"]) == list(example["payment"])
    assert list(order["items"][0]) == list(example["items"][0])


def test_item_bounds() -> None:
    factory = OrderFactory(5)
    assert {len(order["items"]) for order in factory.orders(50, min_items=3, max_items=3)} == {3}
    with pytest.raises(ValueError):
        factory.order(max_items=1001)
    with pytest.raises(ValueError):
        factory.order(min_items=5, max_items=4)


def test_generated_orders_pass_the_service_validator() -> None:
    for order in OrderFactory(6).orders(300):
        assert validate_order(order) == {}
    rng = random.Random(6)
    for index in range(300):
        assert validate_order(edge_case_order(rng, index)) == {}, index


def test_edge_orders_distinct_uids_and_edges_covered() -> None:
    rng = random.Random(7)
    orders = [edge_case_order(rng, index) for index in range(1000)]
    uids = [order["order_uid"] for order in orders]
    assert len(set(uids)) == 1000 and all(UID.match(uid) for uid in uids)
    assert {1, 64} <= {len(uid) for uid in uids}
    assert any(len(order["items"]) == 1000 for order in orders)
    assert all(len(encode(order)) <= ONE_MIB for order in orders)
    sales = {item["sale"] for order in orders for item in order["items"]}
    assert {0, 100} <= sales


def test_edge_orders_are_deterministic() -> None:
    first = [edge_case_order(random.Random(8), index) for index in range(40)]
    second = [edge_case_order(random.Random(8), index) for index in range(40)]
    assert first == second


def test_every_variant_has_an_expected_kind() -> None:
    assert set(INVALID_VARIANTS) == set(EXPECTED_KIND)


@pytest.mark.parametrize("variant", sorted(EXPECTED_KIND))
def test_invalid_record_kinds(variant: str) -> None:
    base = OrderFactory(9).order()
    snapshot = encode(base)
    kind, raw = invalid_record(random.Random(9), base, variant)
    assert kind == EXPECTED_KIND[variant] == INVALID_VARIANTS[variant]
    assert encode(base) == snapshot  # the base order is left alone
    # The consumer's own decoding dead-letters the record with the same type.
    rejection = decode_order(raw)
    assert isinstance(rejection, Rejection) and rejection.error_type == kind
    if kind == "too_large":
        assert len(raw) > ONE_MIB
        return
    assert len(raw) <= ONE_MIB
    assert raw != snapshot  # (a dict comparison would miss 1817.0 == 1817)
    try:
        json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        assert kind == "invalid_json"
    else:
        assert kind == "invalid_order"


def test_invalid_record_random_pick_is_reproducible() -> None:
    base = OrderFactory(10).order()
    picks = [invalid_record(random.Random(seed), base) for seed in range(20)]
    assert picks == [invalid_record(random.Random(seed), base) for seed in range(20)]
    with pytest.raises(ValueError):
        invalid_record(random.Random(0), base, "no_such_variant")


def test_encode_is_compact_utf8() -> None:
    raw = encode({"city": "Москва", "n": [1, 2]})
    assert raw == '{"city":"Москва","n":[1,2]}'.encode()
