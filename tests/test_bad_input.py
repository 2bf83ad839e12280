"""Bad input raises a clear error and never changes the cache."""

import numpy as np
import pytest

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache

from .conftest import check_invariants

DIM = 16


@pytest.fixture
def cache(clock):
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=5, clock=clock)
    x = np.random.default_rng(0).standard_normal((5, DIM))
    cache.put_batch(x, list("abcde"))
    cache.get(x[0])
    return cache


def snapshot(cache):
    idx = cache._index
    return (cache.stats(), check_invariants(idx), idx.codes.tobytes(), idx.tick.tobytes(),
            list(cache._responses._items), cache._version)


good = np.ones(DIM)
CALLS = [
    ("get", lambda c: c.get(np.ones(DIM + 1)), ValueError, f"length {DIM}.*got length {DIM + 1}"),
    ("get 2-D", lambda c: c.get(np.ones((2, DIM))), ValueError, "get_batch"),
    ("get nan", lambda c: c.get(np.full(DIM, np.nan)), ValueError, "finite"),
    ("get text", lambda c: c.get("hello"), TypeError, "embed the text"),
    ("get threshold", lambda c: c.get(good, threshold=1.5), ValueError, r"\[-1, 1\]"),
    ("get threshold type", lambda c: c.get(good, threshold="high"), TypeError, "number"),
    ("put", lambda c: c.put(np.ones(3), "x"), ValueError, "length"),
    ("put inf", lambda c: c.put(np.full(DIM, np.inf), "x"), ValueError, "finite"),
    ("put zero", lambda c: c.put(np.zeros(DIM), "x"), ValueError, "non-zero"),
    ("put ttl", lambda c: c.put(good, "x", ttl=-1), ValueError, "ttl > 0"),
    ("put ttl nan", lambda c: c.put(good, "x", ttl=float("nan")), ValueError, "ttl"),
    ("put ttl type", lambda c: c.put(good, "x", ttl="soon"), TypeError, "ttl"),
    ("put_batch lengths", lambda c: c.put_batch(np.ones((3, DIM)), ["a"]), ValueError,
     r"one response per embedding \(3\), got 1"),
    ("put_batch 1-D", lambda c: c.put_batch(np.ones(DIM), ["a"]), ValueError, r"\(n, 16\)"),
    ("put_batch one bad row", lambda c: c.put_batch(
        np.vstack([np.ones(DIM), np.full(DIM, np.nan)]), ["a", "b"]), ValueError, "row 1"),
    ("put_batch responses", lambda c: c.put_batch(np.ones((2, DIM)), 7), TypeError, "sequence"),
    ("get_batch", lambda c: c.get_batch(np.ones((2, 3))), ValueError, "length"),
    ("search k", lambda c: c.search(good, k=0), ValueError, "k between"),
    ("threshold setter", lambda c: setattr(c, "similarity_threshold", -2), ValueError, "-1, 1"),
]


@pytest.mark.parametrize("name, call, err, text", CALLS, ids=[c[0] for c in CALLS])
def test_bad_input_raises_and_changes_nothing(cache, name, call, err, text):
    before = snapshot(cache)
    with pytest.raises(err, match=text):
        call(cache)
    assert snapshot(cache) == before


@pytest.mark.parametrize("kwargs, err, text", [
    ({"max_entries": 0}, ValueError, "max_entries between 1"),
    ({"max_entries": 2**40}, ValueError, "max_entries"),
    ({"max_entries": 10.0}, TypeError, "max_entries as an integer"),
    ({"similarity_threshold": 1.01}, ValueError, "similarity_threshold in"),
    ({"ttl": 0}, ValueError, "ttl > 0"),
    ({"clock": 5}, TypeError, "clock"),
    ({"parallel": "yes"}, ValueError, "parallel"),
])
def test_bad_constructor_arguments(kwargs, err, text):
    with pytest.raises(err, match=text):
        BinarySemanticCache(BinaryEncoder(DIM), **kwargs)


def test_encoder_must_be_an_encoder():
    with pytest.raises(TypeError, match="BinaryEncoder"):
        BinarySemanticCache(encoder=384)
