"""Valid orders at the contract's edges, for storage round-trip tests: empty and maximal strings,
0 and 2**63-1 integers, non-ASCII text, quotes and SQL, unusual offsets. The limits come from the
schema (via app.seed.common); no Faker, so edge orders are cheap."""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from app.seed.common import (
    INT_MAX,
    LOWER_ALNUM,
    MAX_ITEMS,
    SALE_MAX,
    TEXT_FIELDS,
    UID_ALPHABET,
    UPPER_ALNUM,
    WINDOW_END,
    WINDOW_START,
    Order,
    email_of_length,
    fill,
    finalize_totals,
    max_length,
    rfc3339,
    sized,
    sync_tracks,
    token,
)
from app.seed.realistic import CURRENCIES, catalog_item

__all__ = ["edge_case_order"]

_UNICODE_SAMPLES = (
    "Иван Петров", "Москва, ул. Льва Толстого, д. 16", "東京都渋谷区神南1-2-3", "山田 太郎",
    "🚚📦", "🚚📦 доставка 配達", "Cafe\u0301 Mu\u0308ller", "👨\u200d👩\u200d👧\u200d👦 family",
    "שלום עולם", "مرحبا بالعالم", "Ελληνικά", "İstanbul ğüşıöç", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛", "zero\u200bwidth",
    "Straße ß", "한국어 주소", "Z\u0351\u036b\u0343a\u0352l\u0344go",
)  # fmt: skip
_INJECTION_SAMPLES = (
    "'; DROP TABLE orders; --", '"', "\\", "<script>alert(1)</script>", "O'Reilly",
    'He said "hi"', "\\u0000", "%s %d {0} ${x} {{x}}", "' OR '1'='1", "Robert'); DROP TABLE x;--",
    '{"json": true}', "../../etc/passwd", "NULL", "null", "None", "true", "0", "-1",
    " leading and trailing spaces ", "$1", "\\x00", "C:\\new\\table", "`rm -rf /`", "a\\\"b",
)  # fmt: skip
_FILL_PATTERNS = ("x", "Ж", "📦", "Ж📦ab", "e\u0301")  # 1-, 2- and 4-byte characters, combining marks
_EDGE_OFFSETS = ("Z", "+00:00", "+05:30", "-08:00", "+14:00", "-12:00", "+05:45", "-03:30", "+09:00")
_EDGE_DATES = (
    "1970-01-01T00:00:00Z", "2038-01-19T03:14:08Z", "2024-02-29T23:59:59.999999-12:00",
    "2021-01-01T00:00:00+14:00", "2000-02-29T12:00:00.5+05:30", "2021-11-26T06:22:19.123456+05:30",
    "2021-11-26T06:22:19.5Z", "2021-12-31T23:59:59.9-08:00", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
)  # fmt: skip


_MAX_EMAIL = email_of_length(max_length("delivery", "email"))
_EDGE_EMAILS = (
    _MAX_EMAIL, "a@b.co", "first.last+tag@sub.example.co.uk", "o_k-1@xn--80ak6aa92e.com",
    "UPPER.Case@Example.COM", "test@gmail.com",
)  # fmt: skip
_MAX_PHONE_DIGITS = max_length("delivery", "phone") - 1  # after the optional "+"
_EDGE_PHONES = (
    "+" + "9" * _MAX_PHONE_DIGITS, "00000", "+00000", "1" * _MAX_PHONE_DIGITS, "+12345", "+9720000000",
)  # fmt: skip
_THEMED_ITEMS = 20  # text themes touch at most this many items, so 1000-item orders stay < 1 MiB

TextRule = Callable[[str, int, int], str | None]


def _edge_uid(rng: random.Random, index: int) -> str:
    """Distinct per index: 1 char for a few small indexes, else <c><base36(index)>_<filler>."""
    if index < len(UID_ALPHABET) and index % 8 == 1:
        return UID_ALPHABET[index]
    prefix = "e-_"[index % 3] + _base36(index) + "_"  # "_" ends the index, so uids can't collide
    longest = max_length(None, "order_uid")
    length = longest if index % 8 == 2 else rng.randint(len(prefix), longest)
    return prefix + token(rng, length - len(prefix), UID_ALPHABET)


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, rest = divmod(number, 36)
        digits = LOWER_ALNUM[rest] + digits
        if not number:
            return digits


def _plain_order(rng: random.Random, uid: str, n_items: int) -> Order:
    """A modest ASCII order for the edge themes to distort (no Faker: edge orders must be cheap)."""
    track = "WBILM" + token(rng, 10, UPPER_ALNUM)
    return {
        "order_uid": uid,
        "track_number": track,
        "entry": "WBIL",
        "delivery": {
            "name": "Test Testov",
            "phone": "+9720000000",
            "zip": "2639809",
            "city": "Kiryat Mozkin",
            "address": "Ploshad Mira 15",
            "region": "Kraiot",
            "email": "test@gmail.com",
        },
        "payment": {
            "transaction": uid,
            "request_id": "",
            "currency": rng.choice(CURRENCIES),
            "provider": "wbpay",
            "amount": 0,
            "payment_dt": rng.randrange(WINDOW_START, WINDOW_END),
            "bank": "alpha",
            "delivery_cost": rng.randint(0, 2000),
            "goods_total": 0,
            "custom_fee": 0,
        },
        "items": [catalog_item(rng, track, 1.0) for _ in range(n_items)],
        "locale": "en",
        "internal_signature": "",
        "customer_id": "test",
        "delivery_service": "meest",
        "shardkey": "9",
        "sm_id": 99,
        "date_created": "2021-11-26T06:22:19Z",
        "oof_shard": "1",
    }


def _retext(order: Order, rule: TextRule) -> None:
    """Apply *rule(field, min_len, max_len)* to every free-text field; None keeps the value."""
    for section, field, low, high in TEXT_FIELDS:
        if section is None:
            targets = [order]
        elif section == "items":
            targets = order["items"][:_THEMED_ITEMS]
        else:
            targets = [order[section]]
        for target in targets:
            value = rule(field, low, high)
            if value is not None:
                target[field] = value


def _edge_date(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(_EDGE_DATES)
    offset = rng.choice(_EDGE_OFFSETS)
    created = rng.randrange(WINDOW_START, WINDOW_END)
    return rfc3339(created, rng.randrange(1_000_000), offset, rng.randint(0, 6))


def _edge_empty(rng: random.Random, order: Order) -> None:
    _retext(order, lambda field, low, high: "" if low == 0 else None)


def _edge_zero_ints(rng: random.Random, order: Order) -> None:
    for item in order["items"]:
        item.update(chrt_id=0, nm_id=0, price=0, sale=0, status=0)
    order["payment"].update(payment_dt=0, delivery_cost=0, custom_fee=0)
    order["sm_id"] = 0
    order["date_created"] = "1970-01-01T00:00:00Z"


def _edge_max_ints(rng: random.Random, order: Order) -> None:
    # One item carries INT_MAX and the rest cost 0, so the totals still add up exactly.
    for item in order["items"]:
        item.update(chrt_id=INT_MAX, nm_id=INT_MAX, price=0, status=INT_MAX)
    payment = order["payment"]
    payment.update(payment_dt=INT_MAX, delivery_cost=0, custom_fee=0)
    order["sm_id"] = INT_MAX
    carrier = rng.choice(("price", "price_with_sale", "delivery_cost", "custom_fee"))
    if carrier.startswith("price"):
        first = order["items"][0]
        first.update(price=INT_MAX, sale=0 if carrier == "price" else rng.choice((1, 33, 99)))
    else:
        payment[carrier] = INT_MAX


def _edge_unicode(rng: random.Random, order: Order) -> None:
    _retext(order, lambda field, low, high: sized(rng.choice(_UNICODE_SAMPLES), low, high))
    order["delivery"]["email"] = "o_k-1@xn--80ak6aa92e.com"  # IDN in its ASCII (punycode) form


def _edge_injection(rng: random.Random, order: Order) -> None:
    _retext(order, lambda field, low, high: sized(rng.choice(_INJECTION_SAMPLES), low, high))


def _edge_max_lengths(rng: random.Random, order: Order) -> None:
    pattern = rng.choice(_FILL_PATTERNS)

    def rule(field: str, low: int, high: int) -> str:
        # track_number is repeated in every item: keep it 1 byte/char so 1000 items stay < 1 MiB
        return fill("T" if field == "track_number" else pattern, high)

    _retext(order, rule)
    order["delivery"].update(phone="+" + token(rng, _MAX_PHONE_DIGITS, string.digits), email=_MAX_EMAIL)
    # Breaks transaction == order_uid on purpose: a transaction of maximal length is the column edge.
    order["payment"]["transaction"] = token(rng, max_length("payment", "transaction"), UID_ALPHABET)
    order["shardkey"] = token(rng, max_length(None, "shardkey"), string.digits)
    order["oof_shard"] = "0" * max_length(None, "oof_shard")  # leading zeros: must stay a string
    order["date_created"] = rfc3339(rng.randrange(WINDOW_START, WINDOW_END), 999_999, "+14:00", 6)


def _edge_min_lengths(rng: random.Random, order: Order) -> None:
    char = rng.choice(("a", "Ж", "📦", "0"))
    _retext(order, lambda field, low, high: char * low)
    order["delivery"].update(phone=rng.choice(("00000", "+00000", "12345")), email="a@b.co")
    order["shardkey"] = "0"
    order["oof_shard"] = "0"


def _edge_dates(rng: random.Random, order: Order) -> None:
    order["date_created"] = _edge_date(rng)


def _edge_sales(rng: random.Random, order: Order) -> None:
    while len(order["items"]) < 3:
        order["items"].append(catalog_item(rng, order["track_number"], 1.0))
    sales = [0, SALE_MAX, rng.choice((1, 33, 99))]  # both ends, plus a rounding case
    for position, item in enumerate(order["items"]):
        item["sale"] = sales[position] if position < 3 else rng.randint(0, SALE_MAX)
        item["price"] = rng.choice((1, 3, 7, 999, 12_345, 10**12 + 1, item["price"]))


def _edge_mixed(rng: random.Random, order: Order) -> None:
    """Each field independently at some edge (prices stay modest so the totals still add up)."""
    pools = (_UNICODE_SAMPLES, _INJECTION_SAMPLES)

    def rule(field: str, low: int, high: int) -> str | None:
        mode = rng.randrange(5)
        if mode == 0:
            return None
        if mode == 1:
            return sized(rng.choice(rng.choice(pools)), low, high)
        if mode == 2:
            return fill("T" if field == "track_number" else rng.choice(_FILL_PATTERNS), high)
        if mode == 3:
            return "x" * low
        return "" if low == 0 else None

    _retext(order, rule)
    order["delivery"].update(phone=rng.choice(_EDGE_PHONES), email=rng.choice(_EDGE_EMAILS))
    for item in order["items"]:
        item["chrt_id"] = rng.choice((0, 1, INT_MAX, item["chrt_id"]))
        item["sale"] = rng.choice((0, SALE_MAX, item["sale"]))
    order["sm_id"] = rng.choice((0, INT_MAX, order["sm_id"]))
    order["date_created"] = _edge_date(rng)


_EDGE_THEMES: tuple[Callable[[random.Random, Order], None], ...] = (
    _edge_empty, _edge_zero_ints, _edge_max_ints, _edge_unicode, _edge_injection,
    _edge_max_lengths, _edge_min_lengths, _edge_dates, _edge_sales, _edge_mixed,
)  # fmt: skip


def edge_case_order(rng: random.Random, index: int) -> Order:
    """A valid order at the contract's edges, for storage round-trip tests.

    The theme rotates with *index* (empty strings, 0 and 2**63-1 integers, non-ASCII and emoji,
    quotes/SQL/HTML, strings at their maximum and minimum length, unusual offsets and fractional
    seconds, sale 0/100, a mix); every 250th index (0, 250, ...) has 1000 items. Distinct indexes
    give distinct ``order_uid`` s; the uid is 1 character for indexes 1, 9, ..., 57 and 64 for
    index % 8 == 2. Totals are consistent except where they would pass 2**63-1 (clamped) and the
    max-length theme's maximal ``payment.transaction`` (which then differs from order_uid).
    """
    if index < 0:
        raise ValueError("index must be >= 0")
    n_items = MAX_ITEMS if index % 250 == 0 else rng.randint(1, 5)
    order = _plain_order(rng, _edge_uid(rng, index), n_items)
    _EDGE_THEMES[(index + index // 250) % len(_EDGE_THEMES)](rng, order)
    sync_tracks(order)
    finalize_totals(order)
    return order
