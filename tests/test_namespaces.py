"""Namespaces and exact keys against a plain model: a dict of namespaces and one LRU order."""

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache
from binary_semantic_cache._core import index as index_module
from binary_semantic_cache._core.index import entry_id as make_id

from .conftest import FakeClock, check_invariants, examples

DIM = 48
VECTORS = np.random.default_rng(5).standard_normal((6, DIM))
SPACES = [None, "a", "b", "ü"]
KEYS = ["k0", "k1", b"k1", "k2"]  # "k1" and b"k1" are different keys


@dataclass
class Entry:
    namespace: object
    key: object
    vector: int | None  # None: key-only
    response: object
    expires: float
    count: int = 0


class NamespaceMachine(RuleBasedStateMachine):
    """Every public call on a small cache, mirrored on the model after each step."""

    def __init__(self):
        super().__init__()
        self.clock = FakeClock()
        self.capacity = 5
        self.cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=self.capacity,
                                         similarity_threshold=0.99, clock=self.clock)
        self.model = OrderedDict()  # entry id -> Entry, least recently used first
        self.hits = self.exact_hits = self.misses = self.evictions = 0
        self.issued = []
        self.serial = 0

    # ------------------------------------------------------------ the model's own steps

    def expire(self):
        for i in [i for i, e in self.model.items() if e.expires <= self.clock.now]:
            del self.model[i]

    def keyed(self, namespace, key):
        return next((i for i, e in self.model.items() if e.namespace == namespace
                     and e.key == key and type(e.key) is type(key)), None)

    # ------------------------------------------------------------ rules

    @rule(vector=st.integers(0, 5), namespace=st.sampled_from(SPACES),
          key=st.none() | st.sampled_from(KEYS), ttl=st.none() | st.sampled_from([1.0, 3.0]),
          key_only=st.booleans())
    def put(self, vector, namespace, key, ttl, key_only):
        self.serial += 1
        response = ("r", self.serial)
        embedding = None if key_only and key is not None else VECTORS[vector]
        entry_id = self.cache.put(embedding, response, namespace=namespace, key=key, ttl=ttl)
        self.expire()
        expires = self.clock.now + ttl if ttl else float("inf")
        vector = None if embedding is None else vector
        old = None if key is None else self.keyed(namespace, key)
        if old is not None:
            assert entry_id == old
            e = self.model.pop(old)
            e.vector, e.response, e.expires, e.count = vector, response, expires, e.count + 1
            self.model[old] = e
            return
        if len(self.model) == self.capacity:
            self.model.popitem(last=False)
            self.evictions += 1
        assert entry_id not in self.model
        self.model[entry_id] = Entry(namespace, key, vector, response, expires)
        self.issued.append(entry_id)

    @rule(vector=st.integers(0, 5), namespace=st.sampled_from(SPACES))
    def get(self, vector, namespace):
        self.expire()
        # The most recent scannable entry of this namespace with this vector wins the tie.
        want = next((i for i in reversed(self.model) if self.model[i].namespace == namespace
                     and self.model[i].vector == vector), None)
        hit = self.cache.get(VECTORS[vector], namespace=namespace)
        assert (hit and hit.id) == want
        self.count_lookup(want)
        if hit:
            assert hit.namespace == namespace and hit.response == self.model[want].response

    @rule(namespace=st.sampled_from(SPACES), key=st.sampled_from(KEYS))
    def get_exact(self, namespace, key):
        self.expire()
        want = self.keyed(namespace, key)
        hit = self.cache.get_exact(key, namespace=namespace)
        assert (hit and hit.id) == want
        self.count_lookup(want)
        if hit:
            self.exact_hits += 1
            assert (hit.namespace, hit.key, hit.similarity) == (namespace, key, 1.0)
            assert type(hit.key) is type(key) and hit.response == self.model[want].response
            assert hit.access_count == self.model[want].count

    def count_lookup(self, want):
        if want is None:
            self.misses += 1
        else:
            self.hits += 1
            self.model[want].count += 1
            self.model.move_to_end(want)

    @precondition(lambda self: self.issued)
    @rule(pick=st.integers(0, 10**6))
    def delete(self, pick):
        self.expire()
        victim = self.issued[pick % len(self.issued)]
        assert self.cache.delete(victim) is (victim in self.model)
        self.model.pop(victim, None)

    @rule(namespace=st.sampled_from(SPACES + ["never used"]))
    def clear_one(self, namespace):
        self.cache.clear(namespace=namespace)
        for i in [i for i, e in self.model.items() if e.namespace == namespace]:
            del self.model[i]

    @rule(seconds=st.sampled_from([0.5, 2.0]))
    def tick(self, seconds):
        self.clock.advance(seconds)

    # ------------------------------------------------------------ after every step

    @invariant()
    def agrees_with_the_model(self):
        self.expire()
        cache = self.cache
        assert len(cache) == len(self.model)
        counts = {}
        for e in self.model.values():
            counts[e.namespace] = counts.get(e.namespace, 0) + 1
        assert cache.namespaces() == counts
        order = check_invariants(cache._index)
        gen = cache._index.gen
        assert [make_id(gen[s], s) for s in order] == list(reversed(self.model))
        assert cache._index.check() == (0, -1)
        for namespace in SPACES:
            # search reads a namespace without touching recency: exactly its scannable entries.
            found = cache.search(VECTORS[0], k=10, namespace=namespace)
            want = {i: e for i, e in self.model.items()
                    if e.namespace == namespace and e.vector is not None}
            assert {f.id for f in found} == set(want)
            for f in found:
                e = want[f.id]
                assert (f.namespace, f.key, f.response) == (namespace, e.key, e.response)
        assert [i in cache for i in self.issued] == [i in self.model for i in self.issued]
        stats = cache.stats()
        assert (stats.hits, stats.exact_hits, stats.misses, stats.evictions) == (
            self.hits, self.exact_hits, self.misses, self.evictions)


NamespaceMachine.TestCase.settings = settings(max_examples=examples(60), deadline=None,
                                              stateful_step_count=40)
TestNamespaces = NamespaceMachine.TestCase


class GatherMachine(NamespaceMachine):
    """The same model, every namespace read through its segment (the gather scans).

    A namespace this small is otherwise scanned in the contiguous way; the
    gather scans serve one that holds a small part of a large cache.
    """

    def __init__(self):
        super().__init__()
        self.saved_ratio = index_module.GATHER_RATIO
        index_module.GATHER_RATIO = 10**9

    def teardown(self):
        index_module.GATHER_RATIO = self.saved_ratio


GatherMachine.TestCase.settings = NamespaceMachine.TestCase.settings
TestNamespacesGathered = GatherMachine.TestCase


# ------------------------------------------------------------ the rest, case by case


def make(**kwargs):
    return BinarySemanticCache(BinaryEncoder(DIM), clock=FakeClock(), **kwargs)


def test_isolation_is_a_partition_even_when_the_nearest_code_is_elsewhere():
    cache = make(similarity_threshold=-1.0)
    cache.put(VECTORS[0], "tenant a's answer", namespace="a")
    cache.put(-VECTORS[0], "tenant b's answer", namespace="b")
    # The exact vector lives in "a"; "b" must answer from its own, far, entry.
    assert cache.get(VECTORS[0], namespace="b").response == "tenant b's answer"
    assert cache.get(VECTORS[0], namespace="c") is None
    assert cache.get(VECTORS[0]) is None
    assert cache.get_batch(VECTORS[:1], namespace="b")[0].response == "tenant b's answer"
    assert [e.response for e in cache.search(VECTORS[0], namespace="a")] == ["tenant a's answer"]


def test_a_key_only_entry_is_found_by_key_and_never_by_a_scan():
    cache = make(similarity_threshold=-1.0)
    entry_id = cache.put(None, "exact", key="prompt-hash")
    assert cache.get(VECTORS[0]) is None and cache.search(VECTORS[0]) == []
    hit = cache.get_exact("prompt-hash")
    assert (hit.id, hit.response, hit.similarity, hit.key) == (entry_id, "exact", 1.0,
                                                              "prompt-hash")
    assert cache.namespaces() == {None: 1}
    # Giving it a code later keeps the id and makes it scannable.
    assert cache.put(VECTORS[1], "now with a code", key="prompt-hash") == entry_id
    assert cache.get(VECTORS[1]).id == entry_id
    assert cache.put(None, "key only again", key="prompt-hash") == entry_id
    assert cache.get(VECTORS[1]) is None


def test_replacing_by_key_keeps_the_id_and_takes_the_new_ttl():
    clock = FakeClock()
    cache = BinarySemanticCache(BinaryEncoder(DIM), clock=clock)
    first = cache.put(VECTORS[0], "v1", key="k", ttl=1.0)
    clock.advance(0.5)
    assert cache.put(VECTORS[1], "v2", key="k", ttl=10.0) == first
    clock.advance(2.0)
    hit = cache.get_exact("k")
    assert (hit.id, hit.response, hit.created_at) == (first, "v2", 1000.5)
    assert len(cache) == 1
    clock.advance(10.0)
    assert cache.get_exact("k") is None and len(cache) == 0
    # An expired key is free again: a new entry, not a revival.
    assert cache.put(VECTORS[0], "v3", key="k") != first


def test_a_batch_with_a_repeated_key_leaves_one_entry_holding_the_later_row():
    cache = make()
    ids = cache.put_batch(VECTORS[:3], ["a", "b", "c"], keys=["x", "y", "x"], namespace="n")
    assert ids[0] == ids[2] != ids[1]
    assert len(cache) == 2 and cache.get_exact("x", namespace="n").response == "c"
    assert cache.get(VECTORS[2], namespace="n").response == "c"
    assert cache.get(VECTORS[0], namespace="n") is None


def test_eviction_is_global_least_recently_used_across_namespaces():
    cache = make(max_entries=3)
    a = cache.put(VECTORS[0], 0, namespace="a")
    cache.put(VECTORS[1], 1, namespace="b")
    cache.put(VECTORS[2], 2, namespace="c", key="k")
    cache.get(VECTORS[0], namespace="a")  # "a" is now the most recent
    cache.put(VECTORS[3], 3, namespace="a")  # evicts "b", the least recent of all
    assert cache.namespaces() == {"a": 2, "c": 1} and a in cache
    cache.put(VECTORS[4], 4, namespace="a")  # evicts "c": its key goes with it
    assert cache.get_exact("k", namespace="c") is None
    assert cache.namespaces() == {"a": 3}


def test_clearing_one_namespace_leaves_the_others():
    cache = make()
    for i, name in enumerate(["a", "a", "b", None]):
        cache.put(VECTORS[i], i, namespace=name, key=f"k{i}")
    cache.put(None, "only a key", namespace="a", key="ko")
    cache.clear(namespace="a")
    assert cache.namespaces() == {"b": 1, None: 1}
    assert cache.get_exact("ko", namespace="a") is None
    assert cache.get_exact("k2", namespace="b").response == 2
    cache.clear(namespace=None)
    assert cache.namespaces() == {"b": 1}
    cache.clear()
    assert cache.namespaces() == {} and len(cache) == 0


def test_emptied_namespaces_give_their_ids_back():
    cache = make(max_entries=4)
    for i in range(5000):
        cache.put(VECTORS[i % 6], i, namespace=f"conversation-{i}", key="turn")
    assert len(cache.namespaces()) == 4
    # Ids are swept once they double: the table stays near the live namespaces.
    assert len(cache._spaces.ids) < 2100
    assert cache._index.namespace_slots < 4200
    assert cache.get_exact("turn", namespace="conversation-4999").response == 4999
    assert cache._index.check() == (0, -1)


@pytest.mark.parametrize("rescore", [None, "int8", "float16"])
def test_rescoring_looks_only_inside_the_namespace(rescore):
    cache = make(rescore=rescore, similarity_threshold=0.5)
    cache.put(VECTORS[0], "a", namespace="a")
    cache.put(VECTORS[0] + 0.01, "b", namespace="b")
    cache.put(None, "key only", namespace="b", key="k")
    assert cache.get(VECTORS[0], namespace="b").response == "b"
    assert [e.response for e in cache.search(VECTORS[0], k=5, namespace="b")] == ["b"]
    assert cache.get(VECTORS[0], namespace="c") is None


def test_a_key_table_crowded_under_one_salt_is_refilled_under_another(monkeypatch):
    from binary_semantic_cache._core import lookups

    real = lookups.key_home
    first = {}

    def crowded(record, salt, buckets):
        # Under the cache's first salt every key lands in one bucket.
        first.setdefault("salt", salt)
        return 3 if salt == first["salt"] else real(record, salt, buckets)

    monkeypatch.setattr(lookups, "key_home", crowded)
    cache = make(max_entries=1000)
    n = 400
    x = np.random.default_rng(9).standard_normal((n, DIM))
    ids = cache.put_batch(x, list(range(n)), keys=[f"k{i}" for i in range(n)])
    assert cache._salt != first["salt"] and cache._index.check() == (0, -1)
    assert [cache.get_exact(f"k{i}").id for i in range(n)] == ids
    assert cache.put(x[0], "again", key="k0") == ids[0] and len(cache) == n


def test_a_lookup_racing_the_reuse_of_its_namespace_id_answers_nothing():
    """A lock-free scan resolves its namespace's id first; if the namespace empties and
    the id goes to another namespace before the hit is recorded, the hit is refused."""
    cache = make()
    cache.put(VECTORS[0], "a's", namespace="a")
    x_a = cache._space("a")
    cache.clear(namespace="a")
    cache._spaces.sweep(cache._index.counts())  # "a" is empty: its id is freed
    cache.put(VECTORS[0], "b's", namespace="b")
    assert cache._space("b") == x_a  # ... and given to "b"
    slot, dist = cache._nearest(cache.encoder.encode(VECTORS[0]), x_a)
    with cache._lock:
        assert cache._record_one(slot, dist, -1.0, cache._now(), x_a, "a") is None
        assert cache._record(np.array([[slot]]), np.array([[dist]]), None, -1.0, cache._now(),
                             x_a, "a") == [None]
    assert cache.get(VECTORS[0], namespace="a") is None
    assert cache.get(VECTORS[0], namespace="b").response == "b's"


def test_keys_that_share_a_home_bucket_are_told_apart(monkeypatch):
    from binary_semantic_cache._core import lookups

    monkeypatch.setattr(lookups, "key_home", lambda record, salt, buckets: 3)  # one home
    cache = make(max_entries=50)
    keys = ["k1", b"k1", "k2", "k3"]
    ids = [cache.put(VECTORS[i], i, key=k, namespace="n") for i, k in enumerate(keys)]
    other = cache.put(VECTORS[5], "elsewhere", key="k3", namespace="m")
    assert len(set(ids + [other])) == 5
    # Each key replaces its own entry, wherever it sits in the shared run.
    for i, k in reversed(list(enumerate(keys))):
        assert cache.put(VECTORS[i], f"new {i}", key=k, namespace="n") == ids[i]
    assert cache.put_batch(VECTORS[:2], ["x", "y"], keys=[b"k1", "k3"], namespace="n") == [
        ids[1], ids[3]]
    assert [cache.get_exact(k, namespace="n").response for k in keys] == [
        "new 0", "x", "new 2", "y"]
    assert cache.get_exact("k3", namespace="m").id == other and len(cache) == 5
    cache.delete(ids[1])
    assert cache.get_exact(b"k1", namespace="n") is None
    assert [cache.get_exact(k, namespace="n").id for k in ("k1", "k2", "k3")] == [
        ids[0], ids[2], ids[3]]
    assert cache._index.check() == (0, -1)


def test_a_small_namespace_of_a_large_cache_is_read_through_its_segment():
    cache = make(max_entries=1000, similarity_threshold=0.99)
    rng = np.random.default_rng(12)
    bulk = rng.standard_normal((400, DIM))
    cache.put_batch(bulk, list(range(400)))
    ids = cache.put_batch(VECTORS, [f"a{i}" for i in range(len(VECTORS))], namespace="a")
    idx = cache._index
    assert len(idx._gathered(cache._space("a"))) == 3  # the gather path, not the full scan
    assert [cache.get(v, namespace="a").id for v in VECTORS] == ids
    assert cache.get(bulk[0], namespace="a") is None and cache.get(VECTORS[0]) is None
    assert [e.id for e in cache.get_batch(VECTORS, namespace="a")] == ids
    found = cache.search(VECTORS[2], k=3, namespace="a")
    assert found[0].id == ids[2] and {e.namespace for e in found} == {"a"}
    cache.delete(ids[2])
    assert cache.get(VECTORS[2], namespace="a") is None
    assert {e.id for e in cache.search(VECTORS[2], k=10, namespace="a")} == set(ids) - {ids[2]}
