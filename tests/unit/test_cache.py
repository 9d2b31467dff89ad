"""The per-worker order cache: bounded, newest kept, misses remembered briefly. Pure logic."""

import importlib.metadata
import inspect
import re
import time
from pathlib import Path

from cachelib import SimpleCache

from app.cache import KNOWN_MISSING, CachedOrder, OrderCache, _BulkEvictingCache
from harness.waiting import wait_until
from tests.helpers import contract_example


def make_cache(threshold: int = 100, miss_ttl: int = 1, max_bytes: int = 2**30) -> OrderCache:
    return OrderCache(threshold=threshold, max_bytes=max_bytes, ttl=3600, miss_ttl=miss_ttl)


def document(uid: str) -> dict:
    return {**contract_example(), "order_uid": uid}


def test_a_cached_order_comes_back_as_the_same_bytes_and_etag():
    cache = make_cache()
    stored = cache.put_document(document("a"))
    assert cache.lookup("a") == stored == CachedOrder.from_document(document("a"))
    assert cache.lookup("b") is None


def test_a_full_cache_keeps_its_bound_and_its_newest_orders():
    cache = make_cache(threshold=100)
    for index in range(1000):
        cache.put_document(document(f"order-{index}"))
    held = [index for index in range(1000) if cache.lookup(f"order-{index}")]
    assert 80 <= len(held) <= 100
    assert all(index in held for index in range(990, 1000))


def test_eviction_is_in_bulk_not_per_write():
    cache = _BulkEvictingCache(threshold=1000, max_bytes=2**30, default_timeout=3600)
    for index in range(1000):
        cache.set(f"k{index}", index)
    cache.set("one-more", 1)
    assert len(cache._cache) == 901  # a tenth dropped at once, then the new entry


def test_a_miss_is_remembered_then_forgotten():
    cache = make_cache(miss_ttl=1)
    cache.remember_missing("ghost")
    assert cache.lookup("ghost") is KNOWN_MISSING
    wait_until(lambda: cache.lookup("ghost") is None, 5, "the remembered miss expired")


def test_an_arriving_order_replaces_a_remembered_miss():
    cache = make_cache()
    cache.remember_missing("late")
    cache.put_document(document("late"))
    assert cache.lookup("late") == CachedOrder.from_document(document("late"))


def test_a_zero_threshold_turns_the_cache_off():
    cache = make_cache(threshold=0)
    cache.put_document(document("a"))
    cache.remember_missing("b")
    assert cache.lookup("a") is None and cache.lookup("b") is None


def test_the_cachelib_internals_the_cache_relies_on_are_there():
    """_BulkEvictingCache overrides cachelib's private _prune and calls _remove_expired: this fails
    when cachelib changes them, before the cache silently stops evicting."""
    requirements = (Path(__file__).resolve().parents[2] / "requirements.txt").read_text()
    pinned = re.search(r"^cachelib==(\S+)$", requirements, re.MULTILINE).group(1)
    assert importlib.metadata.version("cachelib") == pinned
    assert list(inspect.signature(SimpleCache._prune).parameters) == ["self"]
    assert list(inspect.signature(SimpleCache._remove_expired).parameters) == ["self", "now"]

    class Recording(SimpleCache):
        prunes = 0

        def _prune(self) -> None:
            self.prunes += 1

    cache = Recording(threshold=7, default_timeout=60)
    cache.set("a", 1)
    cache.add("b", 2)
    assert cache.prunes == 2  # every write prunes first
    assert cache._threshold == 7 and isinstance(cache._cache, dict)
    expires, _ = cache._cache["a"]  # entries are (expiry in Unix seconds, value)
    assert time.time() < expires <= time.time() + 61
    cache.set("gone", 3, timeout=1)
    cache._remove_expired(time.time() + 2)
    assert set(cache._cache) == {"a", "b"}


def held_bodies(cache: OrderCache, uids: list[str]) -> list[bytes]:
    return [found.body for uid in uids if isinstance(found := cache.lookup(uid), CachedOrder)]


def test_a_cache_of_large_orders_keeps_its_byte_bound_and_its_newest_orders():
    one_order = len(CachedOrder.from_document(document("order-0")).body)
    budget = 40 * one_order  # far fewer orders than the count threshold allows
    cache = make_cache(threshold=10_000, max_bytes=budget)
    uids = [f"order-{index}" for index in range(400)]
    for written, uid in enumerate(uids, start=1):
        cache.put_document(document(uid))
        assert sum(map(len, held_bodies(cache, uids[:written]))) <= budget
    held = [uid for uid in uids if cache.lookup(uid)]
    assert 30 <= len(held) < 40  # evicted in bulk, down to 90% of the budget, then refilled
    assert all(uid in held for uid in uids[-10:])


def test_an_order_larger_than_a_tenth_of_the_byte_budget_is_served_but_not_kept():
    one_order = len(CachedOrder.from_document(document("small")).body)
    cache = make_cache(max_bytes=10 * one_order)
    cache.put_document(document("small"))
    big = {**document("big"), "customer_id": "x" * 100}
    assert cache.put_document(big) == CachedOrder.from_document(big)
    assert cache.lookup("big") is None and cache.lookup("small") is not None


def test_a_zero_byte_budget_turns_the_cache_off():
    cache = make_cache(max_bytes=0)
    cache.put_document(document("a"))
    assert cache.lookup("a") is None


def test_the_byte_count_follows_every_way_cachelib_adds_and_drops_entries():
    cache = _BulkEvictingCache(threshold=5, max_bytes=2**30, default_timeout=3600)

    def consistent() -> bool:
        return cache.nbytes == sum(len(value) for _, value in cache._cache.values())

    for index in range(12):  # count-based bulk evictions on the way
        cache.set(f"k{index}", b"v" * index)
        assert consistent()
    cache.set("k11", b"replaced")
    cache.add("k11", b"not added")
    cache.add("new", b"added", timeout=1)
    cache.delete("k10")
    assert consistent()
    cache._remove_expired(time.time() + 2)
    assert "new" not in cache._cache and consistent()
    cache.clear()
    assert cache.nbytes == 0 and consistent()


def test_a_remembered_miss_never_replaces_a_cached_order():
    """A lookup reads PostgreSQL (nothing), the consumer stores and caches the order, and only then
    does the lookup remember its miss: the order stays."""
    cache = make_cache()
    cache.put_document(document("racing"))
    cache.remember_missing("racing")
    assert cache.lookup("racing") == CachedOrder.from_document(document("racing"))
