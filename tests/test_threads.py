"""Several threads at once: invariants, no lost entries, readers overlapping."""

import threading
import time

import numpy as np
import pytest

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache
from binary_semantic_cache import _kernels as K
from binary_semantic_cache._core import index as index_module
from binary_semantic_cache._core.jit import DISABLE_JIT

from .conftest import check_invariants

DIM = 32


def run_threads(target, n, seconds):
    errors = []
    deadline = time.monotonic() + seconds

    def wrapped(i):
        try:
            target(i, deadline)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]


@pytest.mark.parametrize("max_entries", [100_000, 200])
def test_mixed_writers_and_readers_keep_every_invariant(max_entries):
    per_thread = 400
    threads = 4
    vectors = np.random.default_rng(0).standard_normal((threads, per_thread, DIM))
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=max_entries,
                                similarity_threshold=0.95)
    kept = [dict() for _ in range(threads)]
    gets = [0] * threads

    def work(t, deadline):
        rng = np.random.default_rng(t)
        mine = kept[t]
        for step in range(20_000):
            if time.monotonic() > deadline:
                break
            k = int(rng.integers(per_thread))
            op = rng.random()
            if op < 0.4 and k not in mine:
                mine[k] = cache.put(vectors[t, k], (t, k))
            elif op < 0.5 and k in mine:
                deleted = cache.delete(mine.pop(k))
                assert deleted or max_entries < 100_000  # small cache: may be evicted
            else:
                hit = cache.get(vectors[t, k])
                gets[t] += 1
                # Only the exact vector is that close: a hit must carry its own response.
                assert hit is None or hit.response == (t, k)
            if step % 64 == 0:
                found = cache.get_batch(vectors[t, :8])
                gets[t] += 8
                assert all(e is None or e.response == (t, i) for i, e in enumerate(found))

    run_threads(work, threads, seconds=2.0)
    check_invariants(cache._index)
    stats = cache.stats()
    assert stats.hits + stats.misses == sum(gets)
    if max_entries == 100_000:  # nothing evicted: every kept entry must be there
        assert stats.evictions == 0
        assert stats.size == sum(len(m) for m in kept)
        for t, mine in enumerate(kept):
            for k, entry_id in mine.items():
                assert entry_id in cache
                assert cache.get(vectors[t, k]).id == entry_id
    else:  # evictions took some: what is left is a subset of what was kept
        live = [i for mine in kept for i in mine.values() if i in cache]
        assert stats.size == len(live) <= max_entries and stats.evictions > 0


@pytest.mark.skipif(DISABLE_JIT, reason="plain Python holds the GIL by design")
def test_a_reader_inside_a_scan_does_not_block_other_readers():
    n = 200_000
    x = np.random.default_rng(1).standard_normal((n, DIM))
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=n, parallel=False)
    cache.put_batch(x, list(range(n)))
    cache.get(x[0])
    idx = cache._index
    queries = cache.encoder.encode(x[:400])
    slots = np.empty(400, np.int64)
    dists = np.empty(400, np.int64)
    space = (idx.apos, idx.seg[0], int(idx.seg[1][0]), int(idx.seg[1][0] + idx.seg[2][0]))
    K._scan_batch(idx.codes, n, queries[:1], idx.gen, idx.tick, *space, slots[:1],
                  dists[:1])  # warm

    inside, finished = threading.Event(), threading.Event()

    def long_scan():
        inside.set()
        K._scan_batch(idx.codes, n, queries, idx.gen, idx.tick, *space, slots, dists)
        finished.set()

    reader = threading.Thread(target=long_scan)
    reader.start()
    inside.wait()
    completed = 0
    while not finished.is_set():
        assert cache.get(x[completed % n]).response == completed % n
        completed += 1
    reader.join()
    # Had the long scan held the GIL, this thread could not have run a single
    # lookup until it ended.
    assert completed >= 3
    assert slots[:5].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("gather", [False, True], ids=["as sized", "gathered"])
def test_namespaces_stay_apart_under_mixed_threads(gather, monkeypatch):
    """Puts (keyed or not), gets, exact gets and clears across namespaces for 2 s; once as
    the sizes decide, once with every namespace read through its segment while writers
    move segments about."""
    if gather:
        monkeypatch.setattr(index_module, "GATHER_RATIO", 10**9)
    spaces = [None, "a", "b", "c"]
    per = 300
    vectors = np.random.default_rng(2).standard_normal((per, DIM))
    # The same vectors in every namespace: only the partition tells the answers apart.
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=500, similarity_threshold=0.95)
    counts = [0] * 4

    def work(t, deadline):
        rng = np.random.default_rng(10 + t)
        for step in range(50_000):
            if time.monotonic() > deadline:
                break
            name = spaces[int(rng.integers(4))]
            k = int(rng.integers(per))
            op = rng.random()
            if op < 0.35:
                cache.put(vectors[k], (name, k), namespace=name,
                          key=f"q{k}" if rng.random() < 0.5 else None)
            elif op < 0.7:
                hit = cache.get(vectors[k], namespace=name)
                assert hit is None or (hit.namespace, hit.response) == (name, (name, k))
            elif op < 0.9:
                hit = cache.get_exact(f"q{k}", namespace=name)
                assert hit is None or (hit.namespace, hit.key, hit.response) == (
                    name, f"q{k}", (name, k))
            elif op < 0.995:
                found = cache.get_batch(vectors[k:k + 4], namespace=name)
                assert all(e is None or e.response == (name, k + i) for i, e in enumerate(found))
            else:
                cache.clear(namespace=name)
            counts[t] += 1

    run_threads(work, 4, seconds=2.0)
    order = check_invariants(cache._index)
    assert cache._index.check() == (0, -1)
    live = cache.namespaces()
    assert sum(live.values()) == len(cache) == len(order) <= 500
    for name in live:
        for e in cache.search(vectors[0], k=500, namespace=name):
            assert e.namespace == name and e.response[0] == name
    assert min(counts) > 0


def test_racing_puts_of_one_key_leave_one_entry():
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=100)
    vectors = np.random.default_rng(3).standard_normal((4, DIM))
    ids = [set() for _ in range(4)]

    def work(t, deadline):
        for _ in range(300):
            ids[t].add(cache.put(vectors[t], t, key="the same prompt", namespace="n"))

    run_threads(work, 4, seconds=30.0)
    assert len(cache) == 1 and set.union(*ids) == {next(iter(ids[0]))}
    assert cache.get_exact("the same prompt", namespace="n").response in range(4)
