"""Raw Kafka values the consumer must dead-letter, each with the ``dlq.error.type`` (an
:class:`~app.ingest.records.ErrorType`) it should get. The fields, limits and key paths come from
the schema (via app.seed.common)."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

from app.ingest.records import ErrorType
from app.seed.common import (
    INT_PATHS,
    MAX_ITEMS,
    MAX_RECORD_BYTES,
    PLAIN_TEXT_FIELDS,
    REQUIRED_PATHS,
    SALE_MAX,
    TEXT_FIELDS,
    Order,
    Path,
    email_of_length,
    encode,
    field_path,
    max_length,
)
from app.seed.realistic import catalog_item

__all__ = ["INVALID_KINDS", "INVALID_VARIANTS", "invalid_record"]

_JSON, _ORDER, _LARGE = ErrorType.INVALID_JSON, ErrorType.INVALID_ORDER, ErrorType.TOO_LARGE
#: The error types a single record can earn (a conflict needs a stored order with the same uid).
INVALID_KINDS: tuple[ErrorType, ...] = (_JSON, _ORDER, _LARGE)

Builder = Callable[[random.Random, Order], bytes]

# (path, min_len, max_len) of every length-limited string without a format of its own
_LIMITED_PATHS: tuple[tuple[Path, int, int], ...] = tuple(
    (field_path(section, field), low, high) for section, field, low, high in PLAIN_TEXT_FIELDS
)
_FREE_TEXT_PATHS: tuple[Path, ...] = tuple(
    field_path(section, field) for section, field, _, _ in TEXT_FIELDS
)


def _get(order: Any, path: Path) -> Any:
    for step in path:
        order = order[step]
    return order


def _set(order: Order, path: Path, value: Any) -> None:
    _get(order, path[:-1])[path[-1]] = value


def _mutation(change: Callable[[random.Random, Order], None]) -> Builder:
    """A builder: a copy of the (valid) base order, changed by *change*, encoded."""

    def build(rng: random.Random, base: Order) -> bytes:
        order = copy.deepcopy(base)
        change(rng, order)
        return encode(order)

    return build


def _set_random(paths: tuple[Path, ...], values: Callable[[random.Random, Any], Any]) -> Builder:
    """A mutation setting one of *paths* to values(rng, current_value)."""

    def change(rng: random.Random, order: Order) -> None:
        path = rng.choice(paths)
        _set(order, path, values(rng, _get(order, path)))

    return _mutation(change)


def _truncated(rng: random.Random, base: Order) -> bytes:
    raw = encode(base)
    return raw[: rng.randint(1, len(raw) - 1)]  # any proper prefix of an object lacks its "}"


_MARK = "@@NOT-UTF-8@@"


def _not_utf8(rng: random.Random, base: Order) -> bytes:
    order = copy.deepcopy(base)
    order["delivery"]["name"] = _MARK
    bad = rng.choice((b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"Test\xe9", b"\x80"))
    return encode(order).replace(_MARK.encode(), bad)  # otherwise well-formed JSON


def _not_json(rng: random.Random, base: Order) -> bytes:
    return rng.choice((
        b"", b" ", b"\n\t ", b"hello", b"{'order_uid': 'x'}", b'{"order_uid":"x",}', b"{",
        b"undefined", b'{"a":1}{"b":2}', b"\x00\x01\x02",
    ))  # fmt: skip


def _deeply_nested(rng: random.Random, base: Order) -> bytes:
    depth = 10_000  # far beyond Python's recursion limit: json.loads raises RecursionError
    return b'{"a":' + b"[" * depth + b"]" * depth + b"}"


def _not_object(rng: random.Random, base: Order) -> bytes:
    return encode(rng.choice(([base], [], "order", 42, None, True)))


def _delete_field(rng: random.Random, order: Order) -> None:
    path = rng.choice(REQUIRED_PATHS)
    del _get(order, path[:-1])[path[-1]]


def _extra_field(rng: random.Random, order: Order) -> None:
    target = rng.choice((order, order["delivery"], order["payment"], order["items"][0]))
    target[rng.choice(("extra", "comment", "__proto__", "orderUid"))] = rng.choice((1, "x", None))


def _wrong_container(rng: random.Random, order: Order) -> None:
    path, value = rng.choice((
        (("items",), order["items"][0]), (("delivery",), [order["delivery"]]),
        (("payment",), "paid"), (("items",), "[]"), (("items", 0), "item"),
    ))  # fmt: skip
    _set(order, path, value)


def _set_uid(rng: random.Random, order: Order) -> None:
    too_long = "a" * (max_length(None, "order_uid") + 1)
    uid = rng.choice(("", too_long, "abc def", "заказ", "a/b", "a.b", "uid\n", "b563feb7b2b84b6!"))
    order["order_uid"] = uid
    order["payment"]["transaction"] = uid or "x"


def _too_long(rng: random.Random, order: Order) -> None:
    path, _, high = rng.choice(_LIMITED_PATHS)
    _set(order, path, rng.choice(("a", "Ж", "📦")) * (high + 1))  # characters, not bytes


def _too_short(rng: random.Random, order: Order) -> None:
    path, low, _ = rng.choice([entry for entry in _LIMITED_PATHS if entry[1] > 0])
    _set(order, path, "x" * (low - 1))


def _with_nul(rng: random.Random, current: str) -> str:
    cut = rng.randint(0, len(current))
    return current[:cut] + "\u0000" + current[cut:]


def _many_items(rng: random.Random, order: Order) -> None:
    # A fresh small item: the base's own items may be large enough to push the value past 1 MiB.
    item = catalog_item(rng, order["track_number"], 1.0)
    order["items"] = [dict(item) for _ in range(MAX_ITEMS + 1)]


def _padded(rng: random.Random, base: Order) -> bytes:
    raw = encode(base)  # still a valid order, just followed by whitespace: only the size is wrong
    return raw + b" " * max(1, MAX_RECORD_BYTES + 1 - len(raw))


def _big_items(rng: random.Random, base: Order) -> bytes:
    # Every field within its limits, but MAX_ITEMS items of maximal text are over 1 MiB.
    order = copy.deepcopy(base)
    order["track_number"] = "T" * max_length(None, "track_number")
    item = dict(order["items"][0], track_number=order["track_number"])
    for field in ("rid", "name", "size", "brand"):
        item[field] = field[0] * max_length("items", field)
    order["items"] = [item] * MAX_ITEMS
    return encode(order)


def _huge_string(rng: random.Random, base: Order) -> bytes:
    order = copy.deepcopy(base)
    order["internal_signature"] = "x" * rng.randint(MAX_RECORD_BYTES + 1, 2 * MAX_RECORD_BYTES)
    return encode(order)


_BAD_DATES = (
    "2021-13-45T00:00:00Z", "2021-02-30T12:00:00Z", "2021-11-26T24:00:01Z", "2021-11-26T06:60:00Z",
    "2021-11-26T06:22:19+25:00", "not a date", "", "2021-11-26", "06:22:19Z", "2021-11-26T06:22Z",
    "1637907739",
)  # fmt: skip
_BAD_PHONES = (
    "+7 (999) 123-45-67", "+1234", "+" + "1" * max_length("delivery", "phone"), "++79990000000",
    "phone", "", "79990000000+", "+7999000000a", "1234",
)  # fmt: skip
_BAD_EMAILS = (
    "not-an-email", "a@", "@example.com", "a b@example.com", "a@b@c.com", "",
    email_of_length(max_length("delivery", "email") + 1),
)  # fmt: skip

_INVALID_BUILDERS: dict[str, tuple[str, Builder]] = {
    "truncated_json": (_JSON, _truncated),
    "not_utf8": (_JSON, _not_utf8),
    "not_json": (_JSON, _not_json),
    "deeply_nested": (_JSON, _deeply_nested),
    "not_an_object": (_ORDER, _not_object),
    "missing_field": (_ORDER, _mutation(_delete_field)),
    "extra_field": (_ORDER, _mutation(_extra_field)),
    "wrong_container": (_ORDER, _mutation(_wrong_container)),
    "null_value": (_ORDER, _set_random(REQUIRED_PATHS, lambda rng, value: None)),
    "int_as_string": (_ORDER, _set_random(INT_PATHS, lambda rng, value: str(value))),
    "float_for_int": (_ORDER, _set_random(INT_PATHS, lambda rng, value: value + 0.0)),
    "bool_for_int": (_ORDER, _set_random(INT_PATHS, lambda rng, value: rng.random() < 0.5)),
    "negative_int": (_ORDER, _set_random(INT_PATHS, lambda rng, value: -1 - value % 1000)),
    "int_too_big": (
        _ORDER,
        _set_random(INT_PATHS, lambda rng, value: rng.choice((2**63, 2**64, 10**30))),
    ),
    "sale_out_of_range": (
        _ORDER,
        _set_random((("items", 0, "sale"),), lambda rng, value: rng.choice((SALE_MAX + 1, 1000))),
    ),
    "bad_currency": (
        _ORDER,
        _set_random(
            (("payment", "currency"),),
            lambda rng, value: rng.choice(("usd", "US", "USDT", "$", "U5D", "", "Usd")),
        ),
    ),
    "bad_phone": (
        _ORDER,
        _set_random((("delivery", "phone"),), lambda rng, value: rng.choice(_BAD_PHONES)),
    ),
    "bad_email": (
        _ORDER,
        _set_random((("delivery", "email"),), lambda rng, value: rng.choice(_BAD_EMAILS)),
    ),
    "bad_order_uid": (_ORDER, _mutation(_set_uid)),
    "nul_char": (_ORDER, _set_random(_FREE_TEXT_PATHS, _with_nul)),
    "string_too_long": (_ORDER, _mutation(_too_long)),
    "string_too_short": (_ORDER, _mutation(_too_short)),
    "bad_date": (
        _ORDER,
        _set_random((("date_created",),), lambda rng, value: rng.choice(_BAD_DATES)),
    ),
    "date_without_offset": (
        _ORDER,
        _set_random(
            (("date_created",),),
            lambda rng, value: rng.choice(("2021-11-26T06:22:19", "2021-11-26T06:22:19.123456")),
        ),
    ),
    "zero_items": (_ORDER, _set_random((("items",),), lambda rng, value: [])),
    "too_many_items": (_ORDER, _mutation(_many_items)),
    "padded_over_1mib": (_LARGE, _padded),
    "max_items_over_1mib": (_LARGE, _big_items),
    "huge_string": (_LARGE, _huge_string),
}

#: variant name -> the ``dlq.error.type`` the consumer should give it (unless > 1 MiB: too_large)
INVALID_VARIANTS: dict[str, ErrorType] = {name: kind for name, (kind, _) in _INVALID_BUILDERS.items()}


def invalid_record(
    rng: random.Random, base: Order, variant: str | None = None
) -> tuple[ErrorType, bytes]:
    """Return ``(expected dlq.error.type, raw value bytes)`` for a record that must be rejected.

    *base* is a valid order (not modified); *variant* (a key of :data:`INVALID_VARIANTS`) forces
    one variant, otherwise one is picked with *rng*. Classification choices:

    * ``invalid_json`` - bytes that are not UTF-8 JSON text: truncated, not UTF-8, empty or
      whitespace only, not JSON at all, two documents, and a 10,000-level nested array (valid JSON
      in principle, but it cannot be decoded safely - Python's json raises RecursionError - so the
      consumer should treat it as undecodable).
    * ``invalid_order`` - valid JSON that breaks the contract, including JSON that is not an
      object (array, string, number, null, boolean).
    * ``too_large`` - more than ``MAX_RECORD_BYTES`` (1 MiB), even when the content is otherwise valid;
      size wins over every other problem, so any variant that ends up larger is reported as this.
    """
    name = variant if variant is not None else rng.choice(tuple(_INVALID_BUILDERS))
    if name not in _INVALID_BUILDERS:
        raise ValueError(f"unknown variant {name!r}; see INVALID_VARIANTS")
    kind, build = _INVALID_BUILDERS[name]
    raw = build(rng, base)
    return (_LARGE if len(raw) > MAX_RECORD_BYTES else kind), raw
