"""Reproducible order generators (see docs/contract/README.md for the rules they follow).

Three families, all deterministic for a given seed or ``random.Random`` state:

* :class:`OrderFactory` - realistic, contract-valid orders with consistent totals (seeding, load);
* :func:`edge_case_order` - still valid, but at the contract's edges (storage round-trip tests);
* :func:`invalid_record` - raw Kafka values the consumer must dead-letter, with the expected
  ``dlq.error.type``.

No Kafka and no Flask here; Faker is imported only when a factory first needs a locale, so importing
this module stays cheap.
"""

from __future__ import annotations

import copy
import json
import random
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache, lru_cache
from itertools import accumulate
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type-only: importing Faker costs ~0.2 s
    from faker import Faker

__all__ = [
    "INT_MAX",
    "INVALID_KINDS",
    "INVALID_VARIANTS",
    "MAX_ITEMS",
    "MAX_RECORD_BYTES",
    "Order",
    "OrderFactory",
    "edge_case_order",
    "encode",
    "invalid_record",
]

Order = dict[str, Any]

INT_MAX = 2**63 - 1
MAX_ITEMS = 1000
MAX_RECORD_BYTES = 1_048_576  # a value larger than this is "too_large"

_LOWER_ALNUM = string.ascii_lowercase + string.digits
_UPPER_ALNUM = string.ascii_uppercase + string.digits
_UID_ALPHABET = string.ascii_letters + string.digits + "_-"  # exactly the 64 allowed characters
_WINDOW_START = int(datetime(2021, 1, 1, tzinfo=UTC).timestamp())
_WINDOW_END = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
_POOL_SIZE = 200  # Faker values drawn per locale; orders then pick from them with the fast rng

# Key order of the canonical example, which generated orders reproduce.
_TOP_KEYS = (
    "order_uid", "track_number", "entry", "delivery", "payment", "items", "locale",
    "internal_signature", "customer_id", "delivery_service", "shardkey", "sm_id", "date_created",
    "oof_shard",
)  # fmt: skip
_DELIVERY_KEYS = ("name", "phone", "zip", "city", "address", "region", "email")
_PAYMENT_KEYS = (
    "transaction", "request_id", "currency", "provider", "amount", "payment_dt", "bank",
    "delivery_cost", "goods_total", "custom_fee",
)  # fmt: skip
_ITEM_KEYS = (
    "chrt_id", "track_number", "price", "rid", "name", "sale", "size", "total_price", "nm_id",
    "brand", "status",
)  # fmt: skip

# Free-text fields as (section, field, min_len, max_len); section None is the top level. Left out on
# purpose: order_uid, phone, email, currency, date_created (own formats), payment.transaction and
# items[].track_number (mirror other fields), shardkey / oof_shard (kept digit strings).
_TEXT_FIELDS: tuple[tuple[str | None, str, int, int], ...] = (
    (None, "track_number", 1, 255),
    (None, "entry", 1, 10),
    ("delivery", "name", 1, 255),
    ("delivery", "zip", 1, 20),
    ("delivery", "city", 1, 100),
    ("delivery", "address", 1, 500),
    ("delivery", "region", 1, 100),
    ("payment", "request_id", 0, 255),
    ("payment", "provider", 1, 100),
    ("payment", "bank", 1, 100),
    ("items", "rid", 1, 255),
    ("items", "name", 1, 500),
    ("items", "size", 0, 50),
    ("items", "brand", 0, 255),
    (None, "locale", 2, 10),
    (None, "internal_signature", 0, 500),
    (None, "customer_id", 1, 255),
    (None, "delivery_service", 1, 255),
)


# --------------------------------------------------------------------------- shared helpers


def encode(order: Any) -> bytes:
    """Compact UTF-8 JSON, the way producers put an order on the topic."""
    return json.dumps(order, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _token(rng: random.Random, length: int, alphabet: str = _LOWER_ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=length))


def _fit(text: str, max_len: int, default: str) -> str:
    # Faker output is only flavour; the contract's limits are enforced here.
    return text.strip()[:max_len] or default


def _sized(text: str, min_len: int, max_len: int) -> str:
    """Repeat or cut *text* until its length (in characters) is within [min_len, max_len]."""
    text = text or "x" * min_len
    while len(text) < min_len:
        text += text
    return text[:max_len]


def _discounted(price: int, sale: int) -> int:
    return price * (100 - sale) // 100  # the contract's rounding: down


def _finalize_totals(order: Order) -> None:
    """Derive total_price, goods_total and amount; clamp at INT_MAX (only edge orders get there)."""
    goods = 0
    for item in order["items"]:
        item["total_price"] = _discounted(item["price"], item["sale"])
        goods += item["total_price"]
    payment = order["payment"]
    payment["goods_total"] = min(goods, INT_MAX)
    payment["amount"] = min(goods + payment["delivery_cost"] + payment["custom_fee"], INT_MAX)


def _sync_tracks(order: Order) -> None:
    for item in order["items"]:
        item["track_number"] = order["track_number"]


@cache
def _tz(offset: str) -> timezone:
    if offset == "Z":
        return UTC
    hours, minutes = offset[1:].split(":")
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-delta if offset[0] == "-" else delta)


def _rfc3339(epoch_s: int, micros: int, offset: str, frac_digits: int) -> str:
    """Render an instant as seen at *offset* ("Z" or "+HH:MM"), with 0-6 fractional digits."""
    local = datetime.fromtimestamp(epoch_s, _tz(offset))
    # isoformat, not strftime: glibc's %Y does not zero-pad years below 1000
    text = local.replace(tzinfo=None).isoformat()
    if frac_digits:
        text += "." + f"{micros:06d}"[:frac_digits]
    return text + offset


@lru_cache(maxsize=64)
def _count_weights(min_items: int, max_items: int) -> tuple[range, list[float]]:
    # ~1/k^1.5: most orders have one or two items, a few have many
    counts = range(min_items, max_items + 1)
    return counts, list(accumulate(1 / k**1.5 for k in counts))


def _check_item_bounds(min_items: int, max_items: int) -> None:
    if not 1 <= min_items <= max_items <= MAX_ITEMS:
        raise ValueError(f"need 1 <= min_items <= max_items <= {MAX_ITEMS}")


# --------------------------------------------------------------------------- realistic catalogue


@dataclass(frozen=True)
class _Profile:
    """A market: which Faker locale, language, currency, phone plan, banks and carriers."""

    faker_locale: str
    locale: str
    currency: str
    phone_cc: str
    phone_len: int  # national significant digits
    offsets: tuple[str, ...]
    banks: tuple[str, ...]
    services: tuple[str, ...]
    weight: int
    cities: tuple[str, ...] = ()  # set where Faker's own are missing or implausible
    regions: tuple[str, ...] = ()


_PROFILES: dict[str, _Profile] = {
    "ru": _Profile(
        "ru_RU", "ru", "RUB", "7", 10, ("+03:00", "+04:00", "+05:00", "+07:00", "+10:00"),
        ("alpha", "sber", "tinkoff", "vtb", "raiffeisen"),
        ("cdek", "boxberry", "pochta", "meest", "wb"), 30,
    ),
    "us": _Profile(
        "en_US", "en", "USD", "1", 10, ("-04:00", "-05:00", "-06:00", "-07:00", "-08:00"),
        ("chase", "bank of america", "wells fargo", "citi", "capital one"),
        ("ups", "fedex", "usps", "dhl"), 14,
    ),
    "de": _Profile(
        "de_DE", "de", "EUR", "49", 11, ("+01:00", "+02:00"),
        ("deutsche bank", "commerzbank", "sparkasse", "n26", "ing"),
        ("dhl", "hermes", "dpd", "gls"), 10,
    ),
    "fr": _Profile(
        "fr_FR", "fr", "EUR", "33", 9, ("+01:00", "+02:00"),
        ("bnp paribas", "societe generale", "credit agricole", "la banque postale"),
        ("colissimo", "chronopost", "dpd", "mondial relay"), 7,
    ),
    "gb": _Profile(
        "en_GB", "en", "GBP", "44", 10, ("+00:00", "+01:00"),
        ("barclays", "hsbc", "lloyds", "natwest", "monzo"),
        ("royal mail", "dpd", "evri", "dhl"), 6,
    ),
    "jp": _Profile(
        "ja_JP", "ja", "JPY", "81", 10, ("+09:00",),
        ("mufg", "smbc", "mizuho", "rakuten bank"),
        ("yamato", "sagawa", "japan post"), 6,
    ),
    "tr": _Profile(
        "tr_TR", "tr", "TRY", "90", 10, ("+03:00",),
        ("ziraat", "garanti bbva", "isbank", "akbank"),
        ("ptt", "yurtici", "aras", "mng"), 6,
        cities=("İstanbul", "Ankara", "İzmir", "Bursa", "Antalya", "Konya", "Adana", "Eskişehir"),
        regions=("Marmara", "İç Anadolu", "Ege", "Akdeniz", "Karadeniz", "Güneydoğu Anadolu"),
    ),
    "br": _Profile(
        "pt_BR", "pt", "BRL", "55", 11, ("-03:00",),
        ("itau", "bradesco", "nubank", "banco do brasil", "santander"),
        ("correios", "jadlog", "loggi"), 6,
    ),
    "kz": _Profile(
        "ru_RU", "kk", "KZT", "7", 10, ("+05:00",),
        ("kaspi", "halyk", "jusan", "forte"),
        ("kazpost", "cdek", "meest"), 5,
        cities=("Алматы", "Астана", "Шымкент", "Караганда", "Актобе", "Павлодар", "Атырау"),
        regions=("Алматинская область", "Карагандинская область", "Акмолинская область",
                 "Туркестанская область", "Павлодарская область"),
    ),
    "il": _Profile(
        "he_IL", "he", "ILS", "972", 9, ("+02:00", "+03:00"),
        ("leumi", "hapoalim", "discount", "mizrahi"),
        ("israel post", "meest", "dhl"), 3,
        regions=("מחוז הצפון", "מחוז חיפה", "מחוז המרכז", "מחוז תל אביב", "מחוז ירושלים"),
    ),
}  # fmt: skip

# Rough units per US dollar, so that prices look plausible in every currency.
_PRICE_SCALE = {
    "USD": 1.0, "EUR": 0.9, "GBP": 0.8, "RUB": 90.0, "KZT": 480.0, "JPY": 150.0, "TRY": 35.0,
    "BRL": 5.0, "ILS": 3.7,
}  # fmt: skip
_CROSS_BORDER = ("USD", "EUR")  # some shoppers pay in a currency other than the local one
_PROVIDERS = ("wbpay", "stripe", "paypal", "adyen", "cloudpayments", "yookassa", "applepay")
_PROVIDER_CUM = list(accumulate((60, 10, 8, 6, 6, 6, 4)))

# (product, category, USD price range, brands)
_PRODUCTS: tuple[tuple[str, str, tuple[int, int], tuple[str, ...]], ...] = (
    ("Mascara", "beauty", (4, 30), ("Vivienne Sabo", "Maybelline", "L'Oréal Paris", "Essence")),
    ("Lipstick", "beauty", (5, 40), ("MAC", "Maybelline", "Bourjois", "Rimmel")),
    ("Face Cream", "beauty", (6, 80), ("Nivea", "La Roche-Posay", "Garnier", "CeraVe")),
    ("Shampoo", "beauty", (3, 25), ("Head & Shoulders", "Pantene", "Schwarzkopf")),
    ("T-Shirt", "clothes", (5, 40), ("Uniqlo", "H&M", "Zara", "Befree", "Gloria Jeans")),
    ("Jeans", "clothes", (20, 120), ("Levi's", "Wrangler", "Lee", "Mango")),
    ("Hoodie", "clothes", (15, 90), ("Nike", "Adidas", "Puma", "Champion")),
    ("Dress", "clothes", (15, 150), ("Zara", "Mango", "Love Republic", "ASOS")),
    ("Winter Jacket", "clothes", (40, 300), ("The North Face", "Columbia", "Finn Flare")),
    ("Sneakers", "shoes", (25, 180), ("Nike", "Adidas", "Puma", "New Balance", "Asics")),
    ("Boots", "shoes", (30, 220), ("Timberland", "Dr. Martens", "Ecco", "Rieker")),
    ("Wireless Earbuds", "electronics", (15, 250), ("Xiaomi", "Samsung", "Apple", "JBL", "Sony")),
    ("Phone Case", "electronics", (2, 25), ("Spigen", "Baseus", "Xiaomi", "")),
    ("USB-C Cable", "electronics", (2, 20), ("Anker", "Baseus", "Ugreen", "")),
    ("Power Bank", "electronics", (10, 70), ("Xiaomi", "Anker", "Romoss")),
    ("Coffee Mug", "home", (3, 20), ("IKEA", "Luminarc", "Tescoma", "")),
    ("Bed Linen Set", "home", (20, 120), ("Togas", "IKEA", "Cleanelly")),
    ("Frying Pan", "home", (10, 80), ("Tefal", "Rondell", "Fissman")),
    ("Scented Candle", "home", (4, 30), ("Yankee Candle", "IKEA", "")),
    ("Board Game", "toys", (10, 60), ("Hasbro", "Hobby World", "Ravensburger")),
    ("Building Set", "toys", (10, 200), ("LEGO", "Cobi", "Mega Bloks")),
    ("Notebook", "stationery", (1, 15), ("Moleskine", "Leuchtturm1917", "Hatber", "")),
    ("Dog Food", "pets", (5, 70), ("Royal Canin", "Purina", "Pedigree", "Acana")),
)
_ADJECTIVES = ("", "", "", "Classic ", "Premium ", "Mini ", "Organic ", "Waterproof ", "Slim ",
               "Oversized ", "Eco ", "Pro ", "Kids' ", "Limited Edition ")  # fmt: skip
_COLOURS = ("", "", "", ", black", ", white", ", red", ", navy", ", beige", ", green")
_SIZES = {
    "beauty": ("0",),
    "clothes": ("XS", "S", "M", "L", "XL", "XXL", "44", "46", "48", "50"),
    "shoes": tuple(str(size) for size in range(35, 47)),
    "electronics": ("0", ""),
    "home": ("0", "1", "2", "one size"),
    "toys": ("0",),
    "stationery": ("0", "A5", "A4"),
    "pets": ("0", "1 kg", "3 kg", "10 kg"),
}
_SALES = (0, 0, 0, 0, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70)
_STATUSES = (202, 202, 202, 202, 200, 201, 203, 204)
_EMAIL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?@[a-z0-9-]+(?:\.[a-z0-9-]+)+$")


def _catalog_item(rng: random.Random, track: str, scale: float) -> dict[str, Any]:
    product, category, (low, high), brands = rng.choice(_PRODUCTS)
    price = max(1, int(rng.uniform(low, high) * scale))
    return {
        "chrt_id": rng.randint(1_000_000, 99_999_999),
        "track_number": track,
        "price": price,
        "rid": _token(rng, rng.randint(16, 24)),
        "name": rng.choice(_ADJECTIVES) + product + rng.choice(_COLOURS),
        "sale": rng.choice(_SALES),
        "size": rng.choice(_SIZES[category]),
        "total_price": 0,  # filled in by _finalize_totals
        "nm_id": rng.randint(100_000, 99_999_999),
        "brand": rng.choice(brands),
        "status": rng.choice(_STATUSES),
    }


@dataclass(frozen=True)
class _LocalePool:
    names: tuple[str, ...]
    zips: tuple[str, ...]
    cities: tuple[str, ...]
    addresses: tuple[str, ...]
    regions: tuple[str, ...]
    emails: tuple[str, ...]


def _draw(method: Callable[[], str], max_len: int, default: str) -> tuple[str, ...]:
    return tuple(_fit(method(), max_len, default) for _ in range(_POOL_SIZE))


def _emails(fake: Faker) -> tuple[str, ...]:
    # Only addresses any sane validator accepts; anything odd falls back to a plain one.
    emails = []
    for number in range(_POOL_SIZE):
        email = fake.free_email().lower()
        ok = len(email) <= 255 and ".." not in email and _EMAIL_RE.match(email)
        emails.append(email if ok else f"user{number}@example.com")
    return tuple(emails)


def _build_pool(profile: _Profile, seed: str) -> _LocalePool:
    from faker import Faker  # deferred: keeps importing this module cheap

    fake = Faker(profile.faker_locale)
    fake.seed_instance(seed)
    regions = profile.regions or _draw(fake.administrative_unit, 100, "Central")
    return _LocalePool(
        names=_draw(fake.name, 255, "Test Testov"),
        zips=_draw(fake.postcode, 20, "000000"),
        cities=profile.cities or _draw(fake.city, 100, "Moscow"),
        addresses=_draw(fake.street_address, 500, "Ploshad Mira 15"),
        regions=regions,
        emails=_emails(fake),
    )


# --------------------------------------------------------------------------- OrderFactory


class OrderFactory:
    """Realistic, contract-valid orders with consistent totals, reproducible for a given seed.

    ``OrderFactory(seed)`` yields the same sequence of orders in any process; ``seed=None`` is random.
    Faker is slow, so each market's names, cities, addresses... are drawn once (``_POOL_SIZE`` each,
    lazily, on first use) and orders pick from those pools with a plain ``random.Random``.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        # Drawn once here so each market's pool depends only on the seed, not on which market an
        # order happened to need first.
        self._faker_seed = self._rng.getrandbits(64)
        self._pools: dict[str, _LocalePool] = {}
        self._markets = tuple(_PROFILES)
        self._market_cum = list(accumulate(profile.weight for profile in _PROFILES.values()))

    def orders(self, count: int, *, min_items: int = 1, max_items: int = 20) -> Iterator[Order]:
        """Yield *count* orders (lazily, so large counts stream)."""
        if count < 0:
            raise ValueError("count must be >= 0")
        for _ in range(count):
            yield self.order(max_items=max_items, min_items=min_items)

    def order(self, max_items: int = 20, min_items: int = 1) -> Order:
        """One order; keys in the canonical example's order."""
        _check_item_bounds(min_items, max_items)
        rng = self._rng
        market = rng.choices(self._markets, cum_weights=self._market_cum)[0]
        profile = _PROFILES[market]
        uid = _token(rng, rng.randint(20, 32))
        track = "WBILM" + _token(rng, rng.randint(6, 12), _UPPER_ALNUM)
        currency = profile.currency if rng.random() < 0.9 else rng.choice(_CROSS_BORDER)
        scale = _PRICE_SCALE[currency]
        created = rng.randrange(_WINDOW_START, _WINDOW_END)
        order = {
            "order_uid": uid,
            "track_number": track,
            "entry": "WBIL",
            "delivery": self._delivery(profile, self._pool(market)),
            "payment": self._payment(uid, currency, profile, created, scale),
            "items": self._items(track, scale, min_items, max_items),
            "locale": profile.locale,
            "internal_signature": "" if rng.random() < 0.9 else _token(rng, 32, "0123456789abcdef"),
            "customer_id": _token(rng, rng.randint(6, 16)),
            "delivery_service": rng.choice(profile.services),
            "shardkey": str(rng.randrange(10) if rng.random() < 0.8 else rng.randrange(10, 1000)),
            "sm_id": rng.randint(1, 999),
            "date_created": self._date_created(created, profile),
            "oof_shard": str(rng.randrange(10)),
        }
        _finalize_totals(order)
        return order

    def _pool(self, market: str) -> _LocalePool:
        if market not in self._pools:
            seed = f"{self._faker_seed}:{market}"  # str seeds hash the same in every process
            self._pools[market] = _build_pool(_PROFILES[market], seed)
        return self._pools[market]

    def _delivery(self, profile: _Profile, pool: _LocalePool) -> dict[str, str]:
        rng = self._rng
        return {
            "name": rng.choice(pool.names),
            "phone": self._phone(profile),
            "zip": rng.choice(pool.zips),
            "city": rng.choice(pool.cities),
            "address": rng.choice(pool.addresses),
            "region": rng.choice(pool.regions),
            "email": rng.choice(pool.emails),
        }

    def _phone(self, profile: _Profile) -> str:
        # Built from digits: Faker's formatting (spaces, brackets, "x123") breaks the contract.
        rng = self._rng
        national = str(rng.randint(1, 9)) + _token(rng, profile.phone_len - 1, string.digits)
        plus = "+" if rng.random() < 0.95 else ""  # the "+" is optional in the contract
        return plus + profile.phone_cc + national

    def _payment(
        self, uid: str, currency: str, profile: _Profile, created: int, scale: float
    ) -> dict[str, Any]:
        rng = self._rng
        return {
            "transaction": uid,
            "request_id": "" if rng.random() < 0.8 else _token(rng, rng.randint(8, 32)),
            "currency": currency,
            "provider": rng.choices(_PROVIDERS, cum_weights=_PROVIDER_CUM)[0],
            "amount": 0,  # filled in by _finalize_totals
            "payment_dt": max(0, created - rng.randint(-60, 900)),  # paid around creation time
            "bank": rng.choice(profile.banks),
            "delivery_cost": 0 if rng.random() < 0.25 else int(rng.uniform(2, 25) * scale),
            "goods_total": 0,  # filled in by _finalize_totals
            "custom_fee": 0 if rng.random() < 0.85 else int(rng.uniform(1, 15) * scale),
        }

    def _items(self, track: str, scale: float, min_items: int, max_items: int) -> list[dict]:
        counts, cum = _count_weights(min_items, max_items)
        count = self._rng.choices(counts, cum_weights=cum)[0]
        return [_catalog_item(self._rng, track, scale) for _ in range(count)]

    def _date_created(self, created: int, profile: _Profile) -> str:
        rng = self._rng
        offset = "Z" if rng.random() < 0.7 else rng.choice(profile.offsets)
        digits = 0 if rng.random() < 0.8 else rng.choice((3, 6))
        return _rfc3339(created, rng.randrange(1_000_000), offset, digits)


# --------------------------------------------------------------------------- edge-case orders

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


def _email_of_length(length: int) -> str:
    """A syntactically ordinary address (64-char local part, labels <= 63) of exactly *length*."""
    local = "a" * 64
    rest = length - len(local) - len("@") - len(".com")  # characters left for the domain labels
    labels = []
    while rest > 63:
        labels.append("b" * 62)
        rest -= 63  # the label and its dot
    labels.append("b" * rest)
    return f"{local}@{'.'.join(labels)}.com"


_MAX_EMAIL = _email_of_length(255)
_EDGE_EMAILS = (
    _MAX_EMAIL, "a@b.co", "first.last+tag@sub.example.co.uk", "o_k-1@xn--80ak6aa92e.com",
    "UPPER.Case@Example.COM", "test@gmail.com",
)  # fmt: skip
_EDGE_PHONES = ("+" + "9" * 20, "00000", "+00000", "12345678901234567890", "+12345", "+9720000000")
_THEMED_ITEMS = 20  # text themes touch at most this many items, so 1000-item orders stay < 1 MiB

TextRule = Callable[[str, int, int], str | None]


def _edge_uid(rng: random.Random, index: int) -> str:
    """Distinct per index: 1 char for a few small indexes, else <c><base36(index)>_<filler>."""
    if index < len(_UID_ALPHABET) and index % 8 == 1:
        return _UID_ALPHABET[index]
    prefix = "e-_"[index % 3] + _base36(index) + "_"  # "_" ends the index, so uids can't collide
    length = 64 if index % 8 == 2 else rng.randint(len(prefix), 64)
    return prefix + _token(rng, length - len(prefix), _UID_ALPHABET)


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, rest = divmod(number, 36)
        digits = _LOWER_ALNUM[rest] + digits
        if not number:
            return digits


def _plain_order(rng: random.Random, uid: str, n_items: int) -> Order:
    """A modest ASCII order for the edge themes to distort (no Faker: edge orders must be cheap)."""
    track = "WBILM" + _token(rng, 10, _UPPER_ALNUM)
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
            "currency": rng.choice(tuple(_PRICE_SCALE)),
            "provider": "wbpay",
            "amount": 0,
            "payment_dt": rng.randrange(_WINDOW_START, _WINDOW_END),
            "bank": "alpha",
            "delivery_cost": rng.randint(0, 2000),
            "goods_total": 0,
            "custom_fee": 0,
        },
        "items": [_catalog_item(rng, track, 1.0) for _ in range(n_items)],
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
    for section, field, low, high in _TEXT_FIELDS:
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
    created = rng.randrange(_WINDOW_START, _WINDOW_END)
    return _rfc3339(created, rng.randrange(1_000_000), offset, rng.randint(0, 6))


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
    _retext(order, lambda field, low, high: _sized(rng.choice(_UNICODE_SAMPLES), low, high))
    order["delivery"]["email"] = "o_k-1@xn--80ak6aa92e.com"  # IDN in its ASCII (punycode) form


def _edge_injection(rng: random.Random, order: Order) -> None:
    _retext(order, lambda field, low, high: _sized(rng.choice(_INJECTION_SAMPLES), low, high))


def _fill(pattern: str, length: int) -> str:
    return (pattern * (length // len(pattern) + 1))[:length]


def _edge_max_lengths(rng: random.Random, order: Order) -> None:
    pattern = rng.choice(_FILL_PATTERNS)

    def rule(field: str, low: int, high: int) -> str:
        # track_number is repeated in every item: keep it 1 byte/char so 1000 items stay < 1 MiB
        return _fill("T" if field == "track_number" else pattern, high)

    _retext(order, rule)
    order["delivery"].update(phone="+" + _token(rng, 20, string.digits), email=_MAX_EMAIL)
    # Breaks transaction == order_uid on purpose: a 255-char transaction is the column edge.
    order["payment"]["transaction"] = _token(rng, 255, _UID_ALPHABET)
    order["shardkey"] = _token(rng, 10, string.digits)
    order["oof_shard"] = "0" * 10  # leading zeros: must stay a string
    order["date_created"] = _rfc3339(rng.randrange(_WINDOW_START, _WINDOW_END), 999_999, "+14:00", 6)


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
        order["items"].append(_catalog_item(rng, order["track_number"], 1.0))
    sales = [0, 100, rng.choice((1, 33, 99))]  # both ends, plus a rounding case
    for position, item in enumerate(order["items"]):
        item["sale"] = sales[position] if position < 3 else rng.randint(0, 100)
        item["price"] = rng.choice((1, 3, 7, 999, 12_345, 10**12 + 1, item["price"]))


def _edge_mixed(rng: random.Random, order: Order) -> None:
    """Each field independently at some edge (prices stay modest so the totals still add up)."""
    pools = (_UNICODE_SAMPLES, _INJECTION_SAMPLES)

    def rule(field: str, low: int, high: int) -> str | None:
        mode = rng.randrange(5)
        if mode == 0:
            return None
        if mode == 1:
            return _sized(rng.choice(rng.choice(pools)), low, high)
        if mode == 2:
            return _fill("T" if field == "track_number" else rng.choice(_FILL_PATTERNS), high)
        if mode == 3:
            return "x" * low
        return "" if low == 0 else None

    _retext(order, rule)
    order["delivery"].update(phone=rng.choice(_EDGE_PHONES), email=rng.choice(_EDGE_EMAILS))
    for item in order["items"]:
        item["chrt_id"] = rng.choice((0, 1, INT_MAX, item["chrt_id"]))
        item["sale"] = rng.choice((0, 100, item["sale"]))
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
    max-length theme's 255-character ``payment.transaction`` (which then differs from order_uid).
    """
    if index < 0:
        raise ValueError("index must be >= 0")
    n_items = MAX_ITEMS if index % 250 == 0 else rng.randint(1, 5)
    order = _plain_order(rng, _edge_uid(rng, index), n_items)
    _EDGE_THEMES[(index + index // 250) % len(_EDGE_THEMES)](rng, order)
    _sync_tracks(order)
    _finalize_totals(order)
    return order


# --------------------------------------------------------------------------- invalid records

INVALID_KINDS = ("invalid_json", "invalid_order", "too_large")

Builder = Callable[[random.Random, Order], bytes]
Path = tuple[Any, ...]

_REQUIRED_PATHS: tuple[Path, ...] = (
    tuple((key,) for key in _TOP_KEYS)
    + tuple(("delivery", key) for key in _DELIVERY_KEYS)
    + tuple(("payment", key) for key in _PAYMENT_KEYS)
    + tuple(("items", 0, key) for key in _ITEM_KEYS)
)
_INT_PATHS: tuple[Path, ...] = (
    ("payment", "amount"), ("payment", "payment_dt"), ("payment", "delivery_cost"),
    ("payment", "goods_total"), ("payment", "custom_fee"), ("items", 0, "chrt_id"),
    ("items", 0, "nm_id"), ("items", 0, "price"), ("items", 0, "total_price"),
    ("items", 0, "status"), ("items", 0, "sale"), ("sm_id",),
)  # fmt: skip


def _path(section: str | None, field: str) -> Path:
    if section is None:
        return (field,)
    return (section, 0, field) if section == "items" else (section, field)


# (path, min_len, max_len) of every length-limited string without a format of its own
_LIMITED_PATHS: tuple[tuple[Path, int, int], ...] = tuple(
    (_path(section, field), low, high) for section, field, low, high in _TEXT_FIELDS
) + ((("shardkey",), 1, 10), (("oof_shard",), 1, 10), (("payment", "transaction"), 1, 255))
_FREE_TEXT_PATHS: tuple[Path, ...] = (
    ("delivery", "name"), ("delivery", "city"), ("delivery", "address"), ("items", 0, "name"),
    ("items", 0, "brand"), ("customer_id",), ("track_number",),
)  # fmt: skip


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
    path = rng.choice(_REQUIRED_PATHS)
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
    uid = rng.choice(("", "a" * 65, "abc def", "заказ", "a/b", "a.b", "uid\n", "b563feb7b2b84b6!"))
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
    item = _catalog_item(rng, order["track_number"], 1.0)
    order["items"] = [dict(item) for _ in range(MAX_ITEMS + 1)]


def _padded(rng: random.Random, base: Order) -> bytes:
    raw = encode(base)  # still a valid order, just followed by whitespace: only the size is wrong
    return raw + b" " * max(1, MAX_RECORD_BYTES + 1 - len(raw))


def _big_items(rng: random.Random, base: Order) -> bytes:
    # Every field within its limits, but 1000 maximal items are ~1.5 MB.
    order = copy.deepcopy(base)
    order["track_number"] = "T" * 255
    item = dict(order["items"][0], track_number="T" * 255, rid="r" * 255, name="n" * 500)
    item.update(size="s" * 50, brand="b" * 255)
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
    "+7 (999) 123-45-67", "+1234", "+" + "1" * 21, "++79990000000", "phone", "", "79990000000+",
    "+7999000000a", "1234",
)  # fmt: skip
_BAD_EMAILS = (
    "not-an-email", "a@", "@example.com", "a b@example.com", "a@b@c.com", "", _email_of_length(256),
)  # fmt: skip

_INVALID_BUILDERS: dict[str, tuple[str, Builder]] = {
    "truncated_json": ("invalid_json", _truncated),
    "not_utf8": ("invalid_json", _not_utf8),
    "not_json": ("invalid_json", _not_json),
    "deeply_nested": ("invalid_json", _deeply_nested),
    "not_an_object": ("invalid_order", _not_object),
    "missing_field": ("invalid_order", _mutation(_delete_field)),
    "extra_field": ("invalid_order", _mutation(_extra_field)),
    "wrong_container": ("invalid_order", _mutation(_wrong_container)),
    "null_value": ("invalid_order", _set_random(_REQUIRED_PATHS, lambda rng, value: None)),
    "int_as_string": ("invalid_order", _set_random(_INT_PATHS, lambda rng, value: str(value))),
    "float_for_int": ("invalid_order", _set_random(_INT_PATHS, lambda rng, value: value + 0.0)),
    "bool_for_int": ("invalid_order", _set_random(_INT_PATHS, lambda rng, value: rng.random() < 0.5)),
    "negative_int": ("invalid_order", _set_random(_INT_PATHS, lambda rng, value: -1 - value % 1000)),
    "int_too_big": (
        "invalid_order",
        _set_random(_INT_PATHS, lambda rng, value: rng.choice((2**63, 2**64, 10**30))),
    ),
    "sale_out_of_range": (
        "invalid_order",
        _set_random((("items", 0, "sale"),), lambda rng, value: rng.choice((101, 1000))),
    ),
    "bad_currency": (
        "invalid_order",
        _set_random(
            (("payment", "currency"),),
            lambda rng, value: rng.choice(("usd", "US", "USDT", "$", "U5D", "", "Usd")),
        ),
    ),
    "bad_phone": (
        "invalid_order",
        _set_random((("delivery", "phone"),), lambda rng, value: rng.choice(_BAD_PHONES)),
    ),
    "bad_email": (
        "invalid_order",
        _set_random((("delivery", "email"),), lambda rng, value: rng.choice(_BAD_EMAILS)),
    ),
    "bad_order_uid": ("invalid_order", _mutation(_set_uid)),
    "nul_char": ("invalid_order", _set_random(_FREE_TEXT_PATHS, _with_nul)),
    "string_too_long": ("invalid_order", _mutation(_too_long)),
    "string_too_short": ("invalid_order", _mutation(_too_short)),
    "bad_date": (
        "invalid_order",
        _set_random((("date_created",),), lambda rng, value: rng.choice(_BAD_DATES)),
    ),
    "date_without_offset": (
        "invalid_order",
        _set_random(
            (("date_created",),),
            lambda rng, value: rng.choice(("2021-11-26T06:22:19", "2021-11-26T06:22:19.123456")),
        ),
    ),
    "zero_items": ("invalid_order", _set_random((("items",),), lambda rng, value: [])),
    "too_many_items": ("invalid_order", _mutation(_many_items)),
    "padded_over_1mib": ("too_large", _padded),
    "max_items_over_1mib": ("too_large", _big_items),
    "huge_string": ("too_large", _huge_string),
}

#: variant name -> the ``dlq.error.type`` the consumer should give it (unless > 1 MiB: too_large)
INVALID_VARIANTS: dict[str, str] = {name: kind for name, (kind, _) in _INVALID_BUILDERS.items()}


def invalid_record(rng: random.Random, base: Order, variant: str | None = None) -> tuple[str, bytes]:
    """Return ``(expected dlq.error.type, raw value bytes)`` for a record that must be rejected.

    *base* is a valid order (not modified); *variant* (a key of :data:`INVALID_VARIANTS`) forces
    one variant, otherwise one is picked with *rng*. Classification choices:

    * ``invalid_json`` - bytes that are not UTF-8 JSON text: truncated, not UTF-8, empty or
      whitespace only, not JSON at all, two documents, and a 10,000-level nested array (valid JSON
      in principle, but it cannot be decoded safely - Python's json raises RecursionError - so the
      consumer should treat it as undecodable).
    * ``invalid_order`` - valid JSON that breaks the contract, including JSON that is not an
      object (array, string, number, null, boolean).
    * ``too_large`` - more than 1 MiB (1,048,576 bytes), even when the content is otherwise valid;
      size wins over every other problem, so any variant that ends up larger is reported as this.
    """
    name = variant if variant is not None else rng.choice(tuple(_INVALID_BUILDERS))
    if name not in _INVALID_BUILDERS:
        raise ValueError(f"unknown variant {name!r}; see INVALID_VARIANTS")
    kind, build = _INVALID_BUILDERS[name]
    raw = build(rng, base)
    return ("too_large" if len(raw) > MAX_RECORD_BYTES else kind), raw
