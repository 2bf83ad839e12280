import os

import numpy as np
import pytest
from hypothesis import settings

# Kernels compile on first call; a per-example deadline would time the compiler.
# CI runs HYPOTHESIS_PROFILE=ci: five times the examples of every property.
_SCALE = {"default": 1, "ci": 5}
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, max_examples=500, print_blob=True)
settings.load_profile(PROFILE)


def examples(n):
    """``n`` examples for a property, scaled by the profile (more in CI)."""
    return n * _SCALE[PROFILE]

from binary_semantic_cache import _kernels as K


class FakeClock:
    """A clock the test moves by hand, so nothing ever sleeps."""

    def __init__(self, now=1_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def walk(index, start):
    """Slots chained through ``nxt`` from ``start`` (the recency or the free list)."""
    out, s = [], int(start)
    while s >= 0:
        out.append(s)
        s = int(index.nxt[s])
        assert len(out) <= index.capacity, "linked list has a cycle"
    return out


def recency(index):
    """Live slots of an Index, most recent first."""
    return walk(index, index.state[K.HEAD])


def free_list(index):
    return walk(index, index.state[K.FREE])


def check_invariants(index):
    """Every structural invariant of an Index; returns the recency order."""
    order = recency(index)
    free = free_list(index)
    hw = index.high_water
    live = [s for s in range(hw) if index.gen[s] % 2 == 1]
    assert sorted(order) == live, "recency list and live slots disagree"
    assert sorted(free) == [s for s in range(hw) if index.gen[s] % 2 == 0]
    assert index.size == len(order)
    if order:
        assert index.state[K.TAIL] == order[-1]
        assert all(index.prev[b] == a for a, b in zip(order, order[1:]))
        ticks = [int(index.tick[s]) for s in order]
        assert ticks == sorted(ticks, reverse=True) and len(set(ticks)) == len(ticks)
    else:
        assert index.state[K.TAIL] == -1
    if index.has_expiry:
        n = int(index.state[K.HEAPN])
        heap = index.heap[:n]
        assert sorted(heap.tolist()) == sorted(s for s in order if np.isfinite(index.exp[s]))
        for i in range(1, n):
            assert index.exp[heap[(i - 1) // 2]] <= index.exp[heap[i]]
        assert all(index.hpos[heap[i]] == i for i in range(n))
    return order


def random_codes(rng, n_words, n):
    return rng.integers(0, 2**64, size=(n_words, n), dtype=np.uint64, endpoint=False)
