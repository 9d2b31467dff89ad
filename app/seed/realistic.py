"""Realistic, contract-valid orders with consistent totals (seeding, load tests), reproducible for
a given seed. Faker is imported only when a factory first needs a locale, so importing this module
stays cheap."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from app.seed.common import (
    UPPER_ALNUM,
    WINDOW_END,
    WINDOW_START,
    Order,
    check_item_bounds,
    finalize_totals,
    max_length,
    rfc3339,
    token,
)

if TYPE_CHECKING:  # type-only: importing Faker costs ~0.2 s
    from faker import Faker

__all__ = ["CURRENCIES", "OrderFactory", "catalog_item"]

_POOL_SIZE = 200  # Faker values drawn per locale; orders then pick from them with the fast rng


def _fit(text: str, max_len: int, default: str) -> str:
    # Faker output is only flavour; the contract's limits are enforced here.
    return text.strip()[:max_len] or default


@lru_cache(maxsize=64)
def _count_weights(min_items: int, max_items: int) -> tuple[range, list[float]]:
    # ~1/k^1.5: most orders have one or two items, a few have many
    counts = range(min_items, max_items + 1)
    return counts, list(accumulate(1 / k**1.5 for k in counts))


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


def catalog_item(rng: random.Random, track: str, scale: float) -> dict[str, Any]:
    product, category, (low, high), brands = rng.choice(_PRODUCTS)
    price = max(1, int(rng.uniform(low, high) * scale))
    return {
        "chrt_id": rng.randint(1_000_000, 99_999_999),
        "track_number": track,
        "price": price,
        "rid": token(rng, rng.randint(16, 24)),
        "name": rng.choice(_ADJECTIVES) + product + rng.choice(_COLOURS),
        "sale": rng.choice(_SALES),
        "size": rng.choice(_SIZES[category]),
        "total_price": 0,  # filled in by finalize_totals
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


def _draw(method: Callable[[], str], field: str, default: str) -> tuple[str, ...]:
    """_POOL_SIZE values for a delivery field, cut to the contract's length."""
    return tuple(_fit(method(), max_length("delivery", field), default) for _ in range(_POOL_SIZE))


def _emails(fake: Faker) -> tuple[str, ...]:
    # Only addresses any sane validator accepts; anything odd falls back to a plain one.
    emails, longest = [], max_length("delivery", "email")
    for number in range(_POOL_SIZE):
        email = fake.free_email().lower()
        ok = len(email) <= longest and ".." not in email and _EMAIL_RE.match(email)
        emails.append(email if ok else f"user{number}@example.com")
    return tuple(emails)


def _build_pool(profile: _Profile, seed: str) -> _LocalePool:
    from faker import Faker  # deferred: keeps importing this module cheap

    fake = Faker(profile.faker_locale)
    fake.seed_instance(seed)
    regions = profile.regions or _draw(fake.administrative_unit, "region", "Central")
    return _LocalePool(
        names=_draw(fake.name, "name", "Test Testov"),
        zips=_draw(fake.postcode, "zip", "000000"),
        cities=profile.cities or _draw(fake.city, "city", "Moscow"),
        addresses=_draw(fake.street_address, "address", "Ploshad Mira 15"),
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
        check_item_bounds(min_items, max_items)
        rng = self._rng
        market = rng.choices(self._markets, cum_weights=self._market_cum)[0]
        profile = _PROFILES[market]
        uid = token(rng, rng.randint(20, 32))
        track = "WBILM" + token(rng, rng.randint(6, 12), UPPER_ALNUM)
        currency = profile.currency if rng.random() < 0.9 else rng.choice(_CROSS_BORDER)
        scale = _PRICE_SCALE[currency]
        created = rng.randrange(WINDOW_START, WINDOW_END)
        order = {
            "order_uid": uid,
            "track_number": track,
            "entry": "WBIL",
            "delivery": self._delivery(profile, self._pool(market)),
            "payment": self._payment(uid, currency, profile, created, scale),
            "items": self._items(track, scale, min_items, max_items),
            "locale": profile.locale,
            "internal_signature": "" if rng.random() < 0.9 else token(rng, 32, "0123456789abcdef"),
            "customer_id": token(rng, rng.randint(6, 16)),
            "delivery_service": rng.choice(profile.services),
            "shardkey": str(rng.randrange(10) if rng.random() < 0.8 else rng.randrange(10, 1000)),
            "sm_id": rng.randint(1, 999),
            "date_created": self._date_created(created, profile),
            "oof_shard": str(rng.randrange(10)),
        }
        finalize_totals(order)
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
        national = str(rng.randint(1, 9)) + token(rng, profile.phone_len - 1, string.digits)
        plus = "+" if rng.random() < 0.95 else ""  # the "+" is optional in the contract
        return plus + profile.phone_cc + national

    def _payment(
        self, uid: str, currency: str, profile: _Profile, created: int, scale: float
    ) -> dict[str, Any]:
        rng = self._rng
        return {
            "transaction": uid,
            "request_id": "" if rng.random() < 0.8 else token(rng, rng.randint(8, 32)),
            "currency": currency,
            "provider": rng.choices(_PROVIDERS, cum_weights=_PROVIDER_CUM)[0],
            "amount": 0,  # filled in by finalize_totals
            "payment_dt": max(0, created - rng.randint(-60, 900)),  # paid around creation time
            "bank": rng.choice(profile.banks),
            "delivery_cost": 0 if rng.random() < 0.25 else int(rng.uniform(2, 25) * scale),
            "goods_total": 0,  # filled in by finalize_totals
            "custom_fee": 0 if rng.random() < 0.85 else int(rng.uniform(1, 15) * scale),
        }

    def _items(self, track: str, scale: float, min_items: int, max_items: int) -> list[dict]:
        counts, cum = _count_weights(min_items, max_items)
        count = self._rng.choices(counts, cum_weights=cum)[0]
        return [catalog_item(self._rng, track, scale) for _ in range(count)]

    def _date_created(self, created: int, profile: _Profile) -> str:
        rng = self._rng
        offset = "Z" if rng.random() < 0.7 else rng.choice(profile.offsets)
        digits = 0 if rng.random() < 0.8 else rng.choice((3, 6))
        return rfc3339(created, rng.randrange(1_000_000), offset, digits)


#: Every currency the catalogue prices in.
CURRENCIES = tuple(_PRICE_SCALE)
