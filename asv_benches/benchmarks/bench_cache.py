"""The public API end to end: encode, get, put, batches, memory, start-up."""

import numpy as np

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache


class Encode:
    params = [[1, 1000], [384, 1536]]
    param_names = ["rows", "dim"]

    def setup(self, rows, dim):
        self.encoder = BinaryEncoder(dim)
        self.x = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
        if rows == 1:
            self.x = self.x[0]

    def time_encode(self, rows, dim):
        self.encoder.encode(self.x)


class Get:
    params = [1_000, 100_000]
    param_names = ["entries"]

    def setup(self, n):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((n, 384)).astype(np.float32)
        self.cache = BinarySemanticCache(BinaryEncoder(384), max_entries=n)
        self.cache.put_batch(self.x, list(range(n)))
        self.miss = -self.x[0]
        self.batch = self.x[:64]
        self.cache.get(self.x[0])
        self.cache.get_batch(self.batch)

    def time_get_hit(self, n):
        self.cache.get(self.x[1])

    def time_get_miss(self, n):
        self.cache.get(self.miss)

    def time_get_batch64(self, n):
        self.cache.get_batch(self.batch)

    def time_search10(self, n):
        self.cache.search(self.x[1], k=10)


class Put:
    params = [1_000, 100_000]
    param_names = ["max_entries"]
    number = 1
    repeat = 5

    def setup(self, n):
        self.x = np.random.default_rng(0).standard_normal((1_000, 384)).astype(np.float32)
        self.full = BinarySemanticCache(BinaryEncoder(384), max_entries=n)
        self.full.put_batch(np.resize(self.x, (n, 384)), [None] * n)
        self.empty = BinarySemanticCache(BinaryEncoder(384), max_entries=n + 2_000)
        self.empty.put(self.x[0], 0)

    def time_put_1000_one_at_a_time(self, n):
        for v in self.x:
            self.empty.put(v, 1)

    def time_put_1000_on_full_cache(self, n):
        for v in self.x:
            self.full.put(v, 1)

    def time_put_batch_1000_on_full_cache(self, n):
        self.full.put_batch(self.x, [1] * 1_000)


def peakmem_cache_1m_entries():
    cache = BinarySemanticCache(BinaryEncoder(64), max_entries=1_000_000)
    block = np.random.default_rng(0).standard_normal((100_000, 64)).astype(np.float32)
    for _ in range(10):
        cache.put_batch(block, [None] * len(block))


def timeraw_import():
    return "import binary_semantic_cache"


def timeraw_cold_compile_first_get():
    # On purpose: a fresh process with the on-disk kernel cache off.
    return """
import os
os.environ["BSC_NUMBA_CACHE"] = "0"
import numpy as np
from binary_semantic_cache import BinaryEncoder, BinarySemanticCache
cache = BinarySemanticCache(BinaryEncoder(8))
cache.put(np.ones(8), 1)
cache.get(np.ones(8))
"""


timeraw_cold_compile_first_get.timeout = 300


class Persist:
    """Saving and opening a 1M-entry cache (64-d, 256-bit codes)."""

    params = [[True, False], [True, False]]
    param_names = ["mmap", "verify"]
    number = 1
    repeat = 3
    timeout = 600

    def setup_cache(self):
        # asv runs this in a scratch directory it removes afterwards.
        n = 1_000_000
        cache = BinarySemanticCache(BinaryEncoder(64), max_entries=n)
        block = np.random.default_rng(0).standard_normal((100_000, 64)).astype(np.float32)
        for i in range(10):
            cache.put_batch(block, [f"answer {i}-{j}" for j in range(len(block))])
        cache.save("saved-cache")
        return "saved-cache"

    def setup(self, path, mmap, verify):
        # Load the load-time check kernel once, so the timings see only file work.
        with BinarySemanticCache.load(path, mmap=mmap, verify=False) as cache:
            cache.get(np.ones(64))

    def time_load(self, path, mmap, verify):
        BinarySemanticCache.load(path, mmap=mmap, verify=verify).close()

    def time_load_and_first_get(self, path, mmap, verify):
        with BinarySemanticCache.load(path, mmap=mmap, verify=verify) as cache:
            cache.get(np.ones(64))


class Save:
    number = 1
    repeat = 3
    timeout = 600

    def setup(self):
        import tempfile

        n = 1_000_000
        self.cache = BinarySemanticCache(BinaryEncoder(64), max_entries=n)
        block = np.random.default_rng(0).standard_normal((100_000, 64)).astype(np.float32)
        for i in range(10):
            self.cache.put_batch(block, [f"answer {i}-{j}" for j in range(len(block))])
        self.path = tempfile.mkdtemp(prefix="bsc-asv-")

    def teardown(self):
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)

    def time_save_1m(self):
        self.cache.save(self.path)
