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
            list(cache._responses._items), cache._version, cache.namespaces(),
            list(cache._spaces.names), idx.kslot.tobytes(), [a.tobytes() for a in idx.seg])


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
    ("get namespace type", lambda c: c.get(good, namespace=3), TypeError,
     r"namespace as a str or None \(the default namespace\), got int"),
    ("put namespace type", lambda c: c.put(good, "x", namespace=b"a"), TypeError,
     r"namespace as a str or None \(.*\), got bytes"),
    ("get_batch namespace", lambda c: c.get_batch(np.ones((2, DIM)), namespace=["a"]),
     TypeError, "namespace"),
    ("search namespace", lambda c: c.search(good, namespace=1.5), TypeError, "namespace"),
    ("clear namespace", lambda c: c.clear(namespace=7), TypeError, "namespace"),
    ("namespace too long", lambda c: c.put(good, "x", namespace="é" * 2049), ValueError,
     "namespace of at most 4,096 bytes in UTF-8, got 4,098"),
    ("put key type", lambda c: c.put(good, "x", key=42), TypeError,
     "key as a str or bytes, got int"),
    ("put key bytearray", lambda c: c.put(good, "x", key=bytearray(b"k")), TypeError,
     "key as a str or bytes, got bytearray"),
    ("key too long", lambda c: c.put(good, "x", key=b"k" * 4097), ValueError,
     "key of at most 4,096 bytes, got 4,097"),
    ("get_exact key type", lambda c: c.get_exact(None), TypeError, "key as a str or bytes"),
    ("get_exact namespace", lambda c: c.get_exact("k", namespace=0), TypeError, "namespace"),
    ("put None without key", lambda c: c.put(None, "x"), TypeError, "only with key="),
    ("put_batch keys length", lambda c: c.put_batch(np.ones((2, DIM)), ["a", "b"], keys=["k"]),
     ValueError, r"expected 2 keys \(one per row\), got 1"),
    ("put_batch keys one str", lambda c: c.put_batch(np.ones((2, DIM)), ["a", "b"], keys="kk"),
     TypeError, "single str; wrap it in a list"),
    ("put_batch keys bad row", lambda c: c.put_batch(np.ones((2, DIM)), ["a", "b"],
                                                     keys=["k", 5]), TypeError, r"keys\[1\]"),
    ("put_batch keys type", lambda c: c.put_batch(np.ones((2, DIM)), ["a", "b"], keys=7),
     TypeError, "keys as a sequence"),
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


class Clock:
    """A clock that returns whatever the test sets, as a user's clock might."""

    def __init__(self, value):
        self.value = value

    def __call__(self):
        return self.value


def test_a_float32_clock_gives_entries_their_whole_ttl():
    clock = Clock(np.float32(1.7e9))  # float32 steps are 128 s at this time
    cache = BinarySemanticCache(BinaryEncoder(DIM), clock=clock)
    cache.put(good, "x", ttl=30)
    assert cache.get(good).response == "x"
    clock.value = np.float32(1.7e9) + np.float32(200)
    assert cache.get(good) is None


@pytest.mark.parametrize("now", [1e18, 2.0**60])
def test_a_ttl_the_clock_cannot_represent_is_refused(cache, clock, now):
    clock.now = now
    before = snapshot(cache)
    with pytest.raises(ValueError, match=r"ttl=30.0 s at clock time .*now \+ ttl == now"):
        cache.put(good, "x", ttl=30)
    assert snapshot(cache) == before
    cache.put(good, "kept", ttl=1e6)  # a ttl the clock can tell apart still works
    assert cache.get(good).response == "kept"


@pytest.mark.parametrize("value, err, text", [
    (float("nan"), ValueError, "finite time, got nan"),
    (float("inf"), ValueError, "finite time, got inf"),
    (np.float64("nan"), ValueError, "finite time"),
    ("12:00", TypeError, "real number, got str '12:00'"),
    (None, TypeError, "real number, got NoneType"),
    (True, TypeError, "real number, got bool"),
])
@pytest.mark.parametrize("call", ["get", "put", "len", "delete", "stats"])
def test_bad_clock_values_are_named_and_change_nothing(cache, clock, value, err, text, call):
    before = snapshot(cache)
    clock.now = value
    run = {"get": lambda: cache.get(good), "put": lambda: cache.put(good, "x", ttl=5),
           "len": lambda: len(cache), "delete": lambda: cache.delete(1 << 32),
           "stats": lambda: cache.stats()}[call]
    with pytest.raises(err, match=text):
        run()
    clock.now = 1_000.0
    assert snapshot(cache) == before
