"""The scan kernels beside a NumPy twin of the same search."""

import numpy as np

from binary_semantic_cache import _kernels as K
from binary_semantic_cache.tools.bench import bit_count


class Scan:
    params = [1_000, 10_000, 100_000, 1_000_000]
    param_names = ["n_codes"]

    def setup(self, n):
        rng = np.random.default_rng(0)
        self.codes = rng.integers(0, 2**64, size=(4, n), dtype=np.uint64, endpoint=False)
        self.rows = np.ascontiguousarray(self.codes.T)
        self.gen = np.ones(n, np.uint32)
        self.tick = np.arange(n, dtype=np.uint32)
        self.space = (np.arange(n, dtype=np.int32), np.arange(n, dtype=np.int32), 0, n)
        self.q = rng.integers(0, 2**64, size=4, dtype=np.uint64, endpoint=False)
        self.queries = rng.integers(0, 2**64, size=(64, 4), dtype=np.uint64, endpoint=False)
        self.slots = np.empty(64, np.int64)
        self.dists = np.empty(64, np.int64)
        self.n = n
        # Compile (or load) every kernel here, not inside the timings.
        self.time_serial(n)
        self.time_parallel(n)
        self.time_batch64(n)

    def time_serial(self, n):
        K._scan_top1(self.codes, n, self.q, self.gen, self.tick, *self.space)

    def time_parallel(self, n):
        K._scan_top1_parallel(self.codes, n, self.q, self.gen, self.tick, *self.space, 2)

    def time_numpy(self, n):
        bit_count(self.rows ^ self.q).sum(axis=1).argmin()

    def time_batch64(self, n):
        K._scan_batch(self.codes, n, self.queries, self.gen, self.tick, *self.space, self.slots,
                      self.dists)
