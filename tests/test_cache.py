import math

import numpy as np
import pytest

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache, CacheEntry, CacheStats
from binary_semantic_cache._core.index import INITIAL_CAPACITY

from . import naive
from .conftest import check_invariants

DIM = 64


@pytest.fixture
def vectors():
    return np.random.default_rng(0).standard_normal((50, DIM))


def make(clock, **kwargs):
    kwargs.setdefault("max_entries", 100)
    return BinarySemanticCache(BinaryEncoder(DIM, kwargs.pop("bits", 256)), clock=clock, **kwargs)


def near(x, rng, noise=0.05):
    return x + noise * np.linalg.norm(x) / math.sqrt(x.size) * rng.standard_normal(x.size)


def test_original_quick_start_runs_unchanged():
    def embed_text(text):  # stands in for backend.embed_text
        v = np.random.default_rng(sum(map(ord, text))).standard_normal(1536).astype(np.float32)
        return v / np.linalg.norm(v)

    encoder = BinaryEncoder(embedding_dim=1536, code_bits=256)
    cache = BinarySemanticCache(encoder=encoder, max_entries=10000)
    printed = []
    for _ in range(2):
        query = "What is the capital of France?"
        embedding = embed_text(query)
        if hit := cache.get(embedding):
            printed.append(f"HIT: {hit.response}")
        else:
            response = "Paris"
            cache.put(embedding, response)
            printed.append(f"MISS: Cached '{response}'")
    assert printed == ["MISS: Cached 'Paris'", "HIT: Paris"]

    encoder = BinaryEncoder(embedding_dim=768)
    cache = BinarySemanticCache(encoder=encoder)
    cache.put(np.random.default_rng(1).standard_normal(768).astype(np.float32), "Stored Locally")
    assert len(cache) == 1 and cache.max_entries == 1000 and cache.similarity_threshold == 0.80


def test_similarity_is_cosine_estimate_of_hamming_distance(clock, vectors):
    rng = np.random.default_rng(1)
    cache = make(clock)
    cache.put(vectors[0], "a")
    for noise in (0.0, 0.1, 0.3, 0.6, 1.5):
        q = near(vectors[0], rng, noise)
        d = naive.hamming(cache.encoder.encode(q), cache.encoder.encode(vectors[0]))
        want = math.cos(math.pi * d / 256)
        (found,) = cache.search(q, k=1)
        assert found.similarity == pytest.approx(want, abs=1e-12)
        hit = cache.get(q, threshold=-1.0)
        assert hit.similarity == pytest.approx(want, abs=1e-12)
        assert (cache.get(q) is not None) == (want >= 0.80)
        assert (d <= cache.threshold_distance()) == (want >= 0.80)


def test_hit_refreshes_recency_and_counts(clock, vectors):
    cache = make(clock)
    entry_id = cache.put(vectors[0], "a")
    clock.advance(2.5)
    hit = cache.get(vectors[0])
    assert isinstance(hit, CacheEntry)
    assert (hit.id, hit.response, hit.similarity) == (entry_id, "a", 1.0)
    assert (hit.created_at, hit.last_accessed, hit.access_count) == (1000.0, 1002.5, 1)
    clock.advance(0.25)
    hit = cache.get(vectors[0])
    assert (hit.created_at, hit.last_accessed, hit.access_count) == (1000.0, 1002.75, 2)
    with pytest.raises(AttributeError):
        hit.response = "b"
    assert "similarity=1.000" in repr(hit) and "'a'" in repr(hit)


def test_ties_go_to_the_most_recently_used(clock, vectors):
    cache = make(clock)
    first = cache.put(vectors[0], "first")
    second = cache.put(vectors[0], "second")  # same clock reading: order still exact
    assert cache.get(vectors[0]).id == second
    assert [e.id for e in cache.search(vectors[0], k=2)] == [second, first]
    cache.delete(second)
    assert cache.get(vectors[0]).id == first


def test_lower_distance_beats_recency(clock, vectors):
    rng = np.random.default_rng(2)
    cache = make(clock)
    exact = cache.put(vectors[0], "exact")
    cache.put(near(vectors[0], rng, 0.2), "close")
    assert cache.get(vectors[0]).id == exact


def test_deleted_entry_leaves_the_scan_and_its_slot_is_reused(clock, vectors):
    rng = np.random.default_rng(3)
    cache = make(clock)
    gone = cache.put(vectors[0], "stale")
    kept = cache.put(near(vectors[0], rng, 0.05), "kept")
    assert cache.delete(gone) is True
    assert cache.delete(gone) is False
    assert gone not in cache and kept in cache
    hit = cache.get(vectors[0])  # the dead slot must not shadow the live neighbour
    assert hit is not None and hit.id == kept
    reused = cache.put(vectors[1], "new")
    assert reused & 0xFFFFFFFF == gone & 0xFFFFFFFF and reused != gone
    assert gone not in cache and cache.delete(gone) is False
    assert len(cache) == 2
    for bad in (-1, 2**70, "x", None, 1.5, True):
        assert bad not in cache and cache.delete(bad) is False


def test_lru_eviction_counts_puts_and_hits(clock, vectors):
    cache = make(clock, max_entries=3)
    a, b, c = (cache.put(vectors[i], i) for i in range(3))
    cache.get(vectors[0])  # a is now the most recent
    d = cache.put(vectors[3], 3)  # evicts b
    assert [x in cache for x in (a, b, c, d)] == [True, False, True, True]
    cache.put(vectors[4], 4)  # evicts c
    assert [x in cache for x in (a, c)] == [True, False]
    assert cache.stats().evictions == 2 and len(cache) == 3


def test_stats_memory_and_repr(clock, vectors):
    cache = make(clock, max_entries=10)
    for i in range(10):
        cache.put(vectors[i], i)
    cache.get(vectors[0])
    cache.get(-vectors[0])
    stats = cache.stats()
    assert isinstance(stats, CacheStats)
    # The documented record: 32 B of code, 36 B of metadata per slot at 256 bits,
    # 4 B per place in the namespace arena, 12 B per namespace id.
    assert stats.memory_bytes == 68 * 10 + namespace_bytes(cache)
    assert (stats.size, stats.max_size, stats.hits, stats.misses, stats.evictions) == (
        10, 10, 1, 1, 0)
    assert stats.hit_rate == 0.5
    assert repr(cache) == ("BinarySemanticCache(size=10, max_entries=10, code_bits=256, "
                           "threshold=0.8, ttl=None, rescore=None)")


@pytest.mark.parametrize("options, per_entry", [
    ({"ttl": 60.0}, 68 + 16),  # expiry time, heap slot, heap position
    ({"rescore": "int8"}, 68 + 64 + 4),  # 64-d int8 copy and its norm
    ({"rescore": "float16"}, 68 + 128),
    ({"rescore": "float32"}, 68 + 256),
])
def test_memory_per_entry_is_the_documented_record(clock, vectors, options, per_entry):
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=8, clock=clock, **options)
    cache.put_batch(vectors[:8], list(range(8)))
    assert cache.stats().memory_bytes == per_entry * 8 + namespace_bytes(cache)
    assert repr(cache).endswith(f"ttl={options.get('ttl')}, rescore={options.get('rescore')!r}"
                                + (", rescore_k=10)" if "rescore" in options else ")"))


def test_clear_empties_and_keeps_counters(clock, vectors):
    cache = make(clock)
    ids = cache.put_batch(vectors[:5], list("abcde"))
    cache.get(vectors[0])
    cache.clear()
    assert len(cache) == 0 and not any(i in cache for i in ids)
    assert cache.get(vectors[0]) is None
    assert cache.stats().hits == 1 and cache.stats().misses == 1
    cache.put(vectors[0], "again")
    assert cache.get(vectors[0]).response == "again"


@pytest.mark.parametrize("bits", [64, 128, 192, 512, 1024, 4096])
def test_every_code_size_works(clock, vectors, bits):
    cache = make(clock, bits=bits)
    ids = cache.put_batch(vectors[:20], list(range(20)))
    for i in range(20):
        assert cache.get(vectors[i]).id == ids[i]
    assert cache.stats().memory_bytes == cache._index.capacity * (bits // 8 + 36) + (
        namespace_bytes(cache))


def test_batches_match_one_at_a_time(clock, vectors):
    rng = np.random.default_rng(4)
    one, many = make(clock, max_entries=30), make(clock, max_entries=30)
    for i in range(30):
        one.put(vectors[i], i)
    assert many.put_batch(vectors[:30], list(range(30))) == [
        e.id for e in [one.search(v, k=1)[0] for v in vectors[:30]]]
    queries = np.stack([near(vectors[i % 40], rng, 0.1) for i in range(60)])
    singles = [one.get(q) for q in queries]
    batch = many.get_batch(queries)
    assert [(e and (e.response, e.similarity, e.access_count)) for e in batch] == [
        (e and (e.response, e.similarity, e.access_count)) for e in singles]
    assert one.stats() == many.stats()
    assert check_invariants(one._index) == check_invariants(many._index)
    assert many.get_batch(np.empty((0, DIM))) == [] and many.put_batch(np.empty((0, DIM)), []) == []


def test_put_batch_larger_than_capacity_keeps_the_newest(clock, vectors):
    cache = make(clock, max_entries=4)
    ids = cache.put_batch(vectors[:10], list(range(10)))
    assert [i in cache for i in ids] == [False] * 6 + [True] * 4
    assert cache.stats().evictions == 6
    assert cache.get(vectors[9]).response == 9


def test_growth_keeps_every_entry(clock):
    n = 3 * INITIAL_CAPACITY + 5
    x = np.random.default_rng(5).standard_normal((n, DIM))
    cache = make(clock, max_entries=n)
    ids = [cache.put(v, i) for i, v in enumerate(x[: n // 2])]
    ids += cache.put_batch(x[n // 2:], list(range(n // 2, n)))
    assert cache._index.capacity == n and len(cache) == n
    for i in range(0, n, 97):
        assert cache.get(x[i]).id == ids[i]
    check_invariants(cache._index)


def test_search_orders_and_leaves_state_alone(clock, vectors):
    cache = make(clock)
    cache.put_batch(vectors[:20], list(range(20)))
    before = (cache.stats(), check_invariants(cache._index))
    found = cache.search(vectors[3], k=5)
    assert found[0].response == 3 and len(found) == 5
    sims = [e.similarity for e in found]
    assert sims == sorted(sims, reverse=True)
    assert (cache.stats(), check_invariants(cache._index)) == before
    assert len(cache.search(vectors[3], k=500)) == 20
    assert make(clock).search(vectors[0]) == []


def test_ttl_default_and_override(clock, vectors):
    cache = make(clock, ttl=10)
    short = cache.put(vectors[0], "short", ttl=1)
    default = cache.put(vectors[1], "default")
    clock.advance(1)  # expiry is inclusive: at exactly ttl seconds it is gone
    assert short not in cache and cache.get(vectors[0]) is None
    assert cache.get(vectors[1]).id == default
    clock.advance(9)
    assert default not in cache and len(cache) == 0
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations) == (1, 1, 2)


def test_expired_slot_is_reused_before_any_lru_victim(clock, vectors):
    cache = make(clock, max_entries=3)
    lru = cache.put(vectors[0], "oldest, no ttl")
    cache.put(vectors[1], "expires", ttl=5)
    keep = cache.put(vectors[2], "recent")
    clock.advance(6)
    new = cache.put(vectors[3], "new")
    assert all(i in cache for i in (lru, keep, new)) and cache.stats().evictions == 0
    assert cache.stats().expirations == 1
    check_invariants(cache._index)


def test_search_skips_expired(clock, vectors):
    cache = make(clock)
    cache.put(vectors[0], "gone", ttl=1)
    cache.put(vectors[1], "here")
    clock.advance(2)
    assert [e.response for e in cache.search(vectors[0], k=5)] == ["here"]


def test_deleting_from_the_middle_of_the_expiry_heap_keeps_heap_order(clock, vectors):
    """Live TTLs 1, 10, 2, 11, 12, 3, 4; deleting the 2 s entry sifts a larger key down."""
    cache = make(clock, max_entries=16)
    ttls = [1, 10, 2, 11, 12, 3, 4]
    ids = [cache.put(vectors[i], f"ttl {t}", ttl=t) for i, t in enumerate(ttls)]
    idx = cache._index
    slot_of_2 = ids[2] & 0xFFFFFFFF
    position = int(idx.hpos[slot_of_2])
    assert 0 < position < len(ttls) - 1  # in the middle, not the root or the last leaf
    last = int(idx.heap[len(ttls) - 1])
    assert idx.exp[last] > idx.exp[int(idx.heap[2 * position + 1])]  # must move down
    assert cache.delete(ids[2])
    check_invariants(idx)
    heap = [float(idx.exp[s]) - clock.now for s in idx.heap[:len(ttls) - 1]]
    assert sorted(heap) == [1, 3, 4, 10, 11, 12]
    # Expiry then goes in time order.
    order, live = [], set(ids) - {ids[2]}
    start = clock.now
    for t in range(1, 13):
        clock.now = start + t
        assert len(cache) == len(live) - sum(ttls[ids.index(i)] <= t for i in live)
        gone = {i for i in live if i not in cache}
        order += sorted(ttls[ids.index(i)] for i in gone)
        live -= gone
    assert order == [1, 3, 4, 10, 11, 12]


def namespace_bytes(cache):
    """Bytes beside the per-slot record: 4 per place in the namespace arena, 12 per id,
    5 per bucket of the key table."""
    idx = cache._index
    return 4 * idx.seg[0].size + 12 * idx.namespace_slots + 5 * idx.kslot.size


def test_a_full_cache_of_namespaced_keyed_entries_stays_within_80_bytes_each():
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=20_000)
    x = np.random.default_rng(4).standard_normal((20_000, DIM))
    for lo in range(0, 100, 10):  # 200 namespaces, filled in turns of 10 rows each
        for t in range(200):
            rows = slice(t * 100 + lo, t * 100 + lo + 10)
            cache.put_batch(x[rows], [None] * 10, namespace=f"t{t}",
                            keys=[f"{t}/{i}" for i in range(lo, lo + 10)])
    assert len(cache) == 20_000 and len(cache.namespaces()) == 200
    per_entry = cache.stats().memory_bytes / len(cache)
    assert per_entry == (68 * 20_000 + namespace_bytes(cache)) / 20_000
    assert per_entry <= 80
