"""The contract's rules as cases to break one at a time: the validation tests and the OpenAPI drift
check (tests/test_api.py) both go through them."""

import copy
from typing import Any

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
