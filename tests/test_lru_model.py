"""The cache's recency order and evictions against an OrderedDict model."""

from collections import OrderedDict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache
from binary_semantic_cache._core.index import entry_id as make_id

from .conftest import FakeClock, check_invariants, examples

KEYS = 12
VECTORS = np.random.default_rng(11).standard_normal((KEYS, 48))

ops = st.lists(st.tuples(st.sampled_from(["put", "get", "delete", "tick"]),
                         st.integers(0, KEYS - 1)), max_size=120)


@settings(max_examples=examples(80))
@given(ops, st.integers(1, 8))
def test_recency_and_evictions_follow_ordered_dict(ops, capacity):
    clock = FakeClock()
    cache = BinarySemanticCache(BinaryEncoder(48), max_entries=capacity,
                                similarity_threshold=0.99, clock=clock)
    model = OrderedDict()  # entry id -> key, least recently used first
    hits = misses = evictions = 0
    issued = []
    for op, key in ops:
        if op == "put":
            if len(model) == capacity:
                model.popitem(last=False)
                evictions += 1
            entry_id = cache.put(VECTORS[key], key)
            model[entry_id] = key
            issued.append(entry_id)
        elif op == "get":
            # The most recent live entry with this key wins the distance-0 tie.
            want = next((i for i in reversed(model) if model[i] == key), None)
            hit = cache.get(VECTORS[key])
            assert (hit and hit.id) == want
            if want is None:
                misses += 1
            else:
                hits += 1
                model.move_to_end(want)
        elif op == "delete" and model:
            victim = list(model)[key % len(model)]
            assert cache.delete(victim) is True
            del model[victim]
        else:
            clock.advance(0.5)
        assert [i in cache for i in issued] == [i in model for i in issued]
    order = check_invariants(cache._index)
    gen = cache._index.gen
    assert [make_id(gen[s], s) for s in order] == list(reversed(model))
    stats = cache.stats()
    assert (stats.size, stats.hits, stats.misses, stats.evictions) == (
        len(model), hits, misses, evictions)
