"""The per-worker order cache: bounded, newest kept, misses remembered briefly. Pure logic."""

import importlib.metadata
import inspect
import re
import time
from pathlib import Path

from cachelib import SimpleCache

from app.cache import KNOWN_MISSING, CachedOrder, OrderCache, _BulkEvictingCache
from tests.helpers import contract_example, wait_until


def make_cache(threshold: int = 100, miss_ttl: int = 1) -> OrderCache:
    return OrderCache(threshold=threshold, ttl=3600, miss_ttl=miss_ttl)


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
    cache = _BulkEvictingCache(threshold=1000, default_timeout=3600)
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
    cache.put_documents([document("late")])
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
