"""A process forked after a parallel scan can still use the cache (pre-fork servers)."""

import multiprocessing
import sys

import numpy as np
import pytest

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")

DIM = 16
X = np.random.default_rng(3).standard_normal((200, DIM))


def parent_cache():
    cache = BinarySemanticCache(BinaryEncoder(DIM, 128), max_entries=1000, parallel=True)
    cache.put_batch(X, [f"answer {i}" for i in range(len(X))])
    assert cache.get(X[7]).response == "answer 7"  # starts Numba's thread pool here
    assert cache.get_batch(X[:3])[2].response == "answer 2"
    return cache


def use(cache, i):
    """What a worker does with the inherited cache: a scan, a put, a batch, a search."""
    hit = cache.get(X[i]).response
    cache.put(-X[i], f"new {i}")
    batch = [e.response for e in cache.get_batch(np.stack([X[i], -X[i]]))]
    nearest = cache.search(X[i], k=2)[0].response
    return hit, batch, nearest


INHERITED = {}  # what a fork pool's workers find in their copy of this module


def use_inherited(i):
    return use(INHERITED["cache"], i)


def child(cache, queue):
    queue.put(use(cache, 5))


def test_a_forked_child_scans_after_the_parent_ran_a_parallel_scan():
    cache = parent_cache()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(cache, queue))
    proc.start()
    try:
        got = queue.get(timeout=120)
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=30)
    assert proc.exitcode == 0
    assert got == ("answer 5", ["answer 5", "new 5"], "answer 5")


def test_a_fork_pool_maps_over_an_inherited_cache():
    INHERITED["cache"] = cache = parent_cache()
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.map_async(use_inherited, range(6)).get(timeout=120)
    finally:
        INHERITED.clear()
    assert results == [(f"answer {i}", [f"answer {i}", f"new {i}"], f"answer {i}")
                       for i in range(6)]
    assert len(cache) == len(X)  # the workers' puts went into their own copies
