"""Namespaces and exact keys: 1,000 namespaces of 1,000 entries beside a cache of one."""

import numpy as np

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache

SPACES, PER_SPACE, DIM = 1_000, 1_000, 64


def filled(order):
    """A cache of SPACES namespaces of PER_SPACE keyed entries, and one namespace's twin."""
    vectors = np.random.default_rng(0).standard_normal((SPACES, PER_SPACE, DIM),
                                                       dtype=np.float32)
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=SPACES * PER_SPACE)
    step = PER_SPACE if order == "grouped" else 10  # interleaved: 10 rows per turn
    for lo in range(0, PER_SPACE, step):
        for x in range(SPACES):
            cache.put_batch(vectors[x, lo:lo + step], [None] * step, namespace=f"t{x}",
                            keys=[f"{x}/{i}" for i in range(lo, lo + step)])
    alone = BinarySemanticCache(BinaryEncoder(DIM), max_entries=PER_SPACE)
    alone.put_batch(vectors[0], [None] * PER_SPACE)
    return cache, alone, vectors[0, :50] + 0.05


class Namespaces:
    params = [["grouped", "interleaved"]]
    param_names = ["fill"]
    timeout = 600

    def setup(self, order):
        self.cache, self.alone, self.queries = filled(order)
        self.i = 0
        self.cache.get(self.queries[0], namespace="t0")
        self.alone.get(self.queries[0])
        self.cache.get_exact("0/0", namespace="t0")

    def time_get_in_one_namespace(self, order):
        self.cache.get(self.queries[1], namespace="t0")

    def time_get_cache_of_that_namespace_alone(self, order):
        self.alone.get(self.queries[1])

    def time_get_exact(self, order):
        self.cache.get_exact("0/1", namespace="t0")

    def track_index_bytes_per_entry(self, order):
        return self.cache.stats().memory_bytes / len(self.cache)

    track_index_bytes_per_entry.unit = "bytes"


class KeyedPut:
    params = [[False, True]]
    param_names = ["keyed"]
    number = 1
    repeat = 5

    def setup(self, keyed):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((1_000, 384)).astype(np.float32)
        self.cache = BinarySemanticCache(BinaryEncoder(384), max_entries=100_000)
        fill = rng.standard_normal((100_000, 384)).astype(np.float32)
        self.cache.put_batch(fill, [None] * len(fill), keys=[f"f{i}" for i in range(len(fill))])
        self.cache.put(self.x[0], 0, key="warm")
        self.round = 0

    def time_put_1000_on_full_cache(self, keyed):
        self.round += 1
        for i, v in enumerate(self.x):
            self.cache.put(v, 1, key=f"{self.round}/{i}" if keyed else None)
