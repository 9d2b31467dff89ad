"""The per-worker order cache: bounded, newest kept, misses remembered briefly. Pure logic."""

from flask import Flask

from app.cache import CachedOrder, OrderCache, _BulkEvictingCache
from tests.helpers import contract_example, wait_until


def make_cache(threshold: int = 100, miss_ttl: int = 1) -> OrderCache:
    app = Flask(__name__)
    app.config.update(CACHE_THRESHOLD=threshold, CACHE_TTL=3600, CACHE_MISS_TTL=miss_ttl)
    cache = OrderCache()
    cache.init_app(app)
    return cache


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
    assert cache.lookup("ghost") is False
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
