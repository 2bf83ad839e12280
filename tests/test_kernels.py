"""Each kernel against its plain-Python twin in naive.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binary_semantic_cache import _kernels as K
from binary_semantic_cache._core.index import Index
from binary_semantic_cache._core.jit import BLOCK
from binary_semantic_cache.encoder import pack_signs

from . import naive
from .conftest import check_invariants, examples, random_codes

words = st.integers(0, 2**64 - 1)
code_pairs = st.integers(1, 8).flatmap(
    lambda w: st.tuples(st.lists(words, min_size=w, max_size=w),
                        st.lists(words, min_size=w, max_size=w)))


def u64(values):
    return np.array(values, dtype=np.uint64)


@given(code_pairs)
def test_hamming_matches_naive_and_is_a_metric(pair):
    a, b = u64(pair[0]), u64(pair[1])
    assert K._hamming(a, b) == naive.hamming(a, b)
    assert K._hamming(a, a) == 0
    assert K._hamming(a, b) == K._hamming(b, a)
    assert K._hamming(a, ~a) == 64 * a.size


@pytest.mark.parametrize("bits", [64, 192, 1024])
def test_pack_signs_matches_naive(bits):
    rng = np.random.default_rng(bits)
    proj = rng.standard_normal((5, bits)).astype(np.float32)
    proj[1] = 0.0  # zero is not positive
    proj[2] = np.abs(proj[2])
    proj[3, ::3] = -0.0
    out = pack_signs(proj > 0)
    assert out.dtype == np.uint64 and out.flags.c_contiguous
    assert out.tolist() == [naive.pack_signs(row) for row in proj]
    assert out[1].tolist() == [0] * (bits // 64)
    assert out[2].tolist() == [2**64 - 1] * (bits // 64)
    assert pack_signs(proj[4] > 0).tolist() == naive.pack_signs(proj[4])  # one row


@pytest.mark.parametrize("value", [0, 1, 2**63, 2**64 - 1, 0x5555555555555555])
def test_popcount_edges(value):
    assert K._hamming(u64([value]), u64([0])) == naive.popcount(value)


def make_scan_case(rng, n_words, n, kind):
    codes = random_codes(rng, n_words, n)
    if kind == "zeros":
        codes[:] = 0
    elif kind == "ones":
        codes[:] = np.uint64(2**64 - 1)
    elif kind == "duplicates" and n:
        codes[:, :] = codes[:, rng.integers(0, n, size=n)]  # many exact ties
    gen = np.ones(n, np.uint32)
    if kind == "holes" and n:
        gen[rng.random(n) < 0.5] = 2  # released slots
    tick = rng.permutation(n).astype(np.uint32) + 1
    q = codes[:, rng.integers(0, n)].copy() if n and kind != "far" else random_codes(rng, n_words, 1)[:, 0]
    return codes, gen, tick, q


KINDS = ["random", "zeros", "ones", "duplicates", "holes", "far"]
SIZES = [0, 1, 2, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 37]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_scan_top1_matches_naive(kind, n):
    rng = np.random.default_rng(n * 31 + len(kind))
    codes, gen, tick, q = make_scan_case(rng, 4, n, kind)
    want = naive.scan_top1(codes, n, q, gen, tick)
    s, d = K._scan_top1(codes, n, q, gen, tick, *default_space(n))
    assert (s, d if s >= 0 else None) == want
    for chunks in (1, 2, 3):
        s, d = K._scan_top1_parallel(codes, n, q, gen, tick, *default_space(n), chunks)
        assert (s, d if s >= 0 else None) == want
        # The scans for a cache of one namespace without key-only entries check no segment.
        s, d = K._scan_top1_parallel_any(codes, n, q, gen, tick, chunks)
        assert (s, d if s >= 0 else None) == want
    s, d = K._scan_top1_any(codes, n, q, gen, tick)
    assert (s, d if s >= 0 else None) == want


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [0, 1, BLOCK + 1, 2 * BLOCK + 37])
def test_scan_batch_matches_naive(kind, n):
    rng = np.random.default_rng(n + 7 * len(kind))
    codes, gen, tick, _ = make_scan_case(rng, 2, n, kind)
    queries = np.ascontiguousarray(random_codes(rng, 2, 5).T)
    if n:
        queries[:3] = codes[:, :3].T
    want = [naive.scan_top1(codes, n, q, gen, tick) for q in queries]
    for run in ("serial", 1, 2, 4):
        slots = np.empty(5, np.int64)
        dists = np.empty(5, np.int64)
        if run == "serial":
            K._scan_batch(codes, n, queries, gen, tick, *default_space(n), slots, dists)
        else:
            K._scan_batch_parallel(codes, n, queries, gen, tick, *default_space(n), slots, dists,
                                   run)
        got = [(s, d if s >= 0 else None) for s, d in zip(slots.tolist(), dists.tolist())]
        assert got == want


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [1, 3, 50])
def test_topk_matches_naive(kind, k):
    rng = np.random.default_rng(k + len(kind))
    n = BLOCK + 100
    codes, gen, tick, q = make_scan_case(rng, 3, n, kind)
    slots = np.empty(k, np.int64)
    dists = np.empty(k, np.int64)
    want = naive.topk(codes, n, q, gen, tick, k)
    found = K._topk(codes, n, q, gen, tick, *default_space(n), slots, dists)
    assert list(zip(slots[:found].tolist(), dists[:found].tolist())) == want
    for chunks in (1, 2, 3):
        slots[:] = -1
        found = K._topk_parallel(codes, n, q, gen, tick, *default_space(n), slots, dists, chunks)
        assert list(zip(slots[:found].tolist(), dists[:found].tolist())) == want


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 300), st.sampled_from([1, 2, 4, 64]))
def test_scan_property_matches_naive(seed, n, n_words):
    rng = np.random.default_rng(seed)
    codes, gen, tick, q = make_scan_case(rng, n_words, n, "holes")
    s, d = K._scan_top1(codes, n, q, gen, tick, *default_space(n))
    assert (s, d if s >= 0 else None) == naive.scan_top1(codes, n, q, gen, tick)


def test_scan_accepts_read_only_and_memory_mapped_codes(tmp_path):
    rng = np.random.default_rng(5)
    codes, gen, tick, q = make_scan_case(rng, 4, 3000, "random")
    mapped = np.lib.format.open_memmap(tmp_path / "codes.npy", mode="w+", dtype=np.uint64,
                                       shape=codes.shape)
    mapped[:] = codes
    mapped.flush()
    del mapped
    view = np.load(tmp_path / "codes.npy", mmap_mode="r")
    assert not view.flags.writeable
    want = naive.scan_top1(codes, 3000, q, gen, tick)
    assert K._scan_top1(view, 3000, q, gen, tick, *default_space(3000)) == want
    frozen = codes.copy()
    frozen.flags.writeable = False
    assert K._scan_top1(frozen, 3000, q, gen, tick, *default_space(3000)) == want


# ------------------------------------------------------------ slots and recency


def default_space(n):
    """``(apos, members, lo, hi)`` of ``n`` slots all in one namespace, slot i at place i."""
    return np.arange(n, dtype=np.int32), np.arange(n, dtype=np.int32), 0, n


def insert(index, rng, now, expires=np.inf, flags=0, home=0):
    new = random_codes(rng, index.codes.shape[0], 1).T.copy()
    _, slots, ids, evicted, _ = index.insert(new, np.array([expires]), now,
                                             np.array([flags], np.int32),
                                             np.array([home], np.int64))
    slot, gen = int(slots[0]), ids[0] >> 32
    assert gen == index.gen[slot] and gen % 2 == 1
    return slot, evicted, new[0]


@settings(max_examples=examples(40), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["insert", "insert_ttl", "touch", "release", "purge"]),
                          st.integers(0, 10**6)), max_size=80),
       st.integers(1, 9))
def test_slot_kernels_match_model(ops, capacity):
    index = Index(2, capacity)
    index.enable_expiry()
    model = naive.SlotModel(capacity)
    rng = np.random.default_rng(capacity)
    now = 0.0
    for step, (op, arg) in enumerate(ops):
        now += 1.0
        live = model.recency()
        if op.startswith("insert"):
            expires = now + 1 + arg % 7 + step * 1e-6 if op == "insert_ttl" else np.inf
            model.purge(now)
            index.purge(now)
            want_slot, want_evicted = model.insert(expires)
            slot, evicted, code = insert(index, rng, now, expires)
            assert (slot, evicted) == (want_slot, int(want_evicted is not None))
            assert index.codes[:, slot].tolist() == code.tolist()
        elif op == "touch" and live:
            s = live[arg % len(live)]
            model.touch(s)
            K._touch(index.prev, index.nxt, index.tick, index.count, index.created, index.seen,
                     index.state, s, now)
            assert index.seen[s] == np.float32(now - index.created[s])
        elif op == "release" and live:
            s = live[arg % len(live)]
            model.release(s)
            index.release(s)
        elif op == "purge":
            assert index.purge(now + arg % 5)[0] == model.purge(now + arg % 5)
        assert check_invariants(index) == model.recency()
        assert [int(index.gen[s]) for s in range(index.high_water)] == [
            model.gen[s] for s in range(model.high_water)]
        assert all(int(index.count[s]) == model.count[s] for s in model.recency())


def test_tick_wrap_renumbers_in_recency_order():
    index = Index(1, 8)
    rng = np.random.default_rng(0)
    for _ in range(5):
        insert(index, rng, 1.0)
    before = check_invariants(index)
    index.state[K.TICK] = int(K.TICK_MAX) - 1
    for s in (before[-1], before[-2]):  # touch the two oldest: the counter wraps
        K._touch(index.prev, index.nxt, index.tick, index.count, index.created, index.seen,
                 index.state, s, 2.0)
    order = check_invariants(index)
    assert order == [before[-2], before[-1]] + before[:-2]
    assert index.tick[order].tolist() == [5, 4, 3, 2, 1]
    assert index.state[K.TICK] == 5


@pytest.mark.parametrize("dtype", [np.int8, np.float32])
def test_rescore_matches_naive(dtype):
    rng = np.random.default_rng(7)
    raw = rng.standard_normal((20, 24))
    vectors = (np.rint(raw * 20) if dtype == np.int8 else raw).astype(dtype)
    vnorm = (np.linalg.norm(vectors.astype(np.float64), axis=1).astype(np.float32)
             if dtype == np.int8 else np.zeros(0, np.float32))
    if dtype == np.float32:
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    q = rng.standard_normal(24).astype(np.float32)
    q /= np.linalg.norm(q)
    slots = np.array([3, 0, 19, 7], np.int64)
    out = np.empty(4)
    K._rescore(vectors, vnorm, slots, q, out)
    assert out == pytest.approx([naive.cosine(vectors[s], q) for s in slots], abs=1e-6)


def test_rescore_half_matches_naive():
    rng = np.random.default_rng(8)
    halves = rng.standard_normal((10, 16)).astype(np.float16)
    table = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(
        np.float32)
    q = rng.standard_normal(16).astype(np.float32)
    slots = np.array([9, 2], np.int64)
    out = np.empty(2)
    K._rescore_half(halves.view(np.uint16), table, slots, q, out)
    assert out == pytest.approx([float(halves[s].astype(np.float64) @ q) for s in slots],
                                abs=1e-5)


@pytest.mark.parametrize("kind", ["random", "duplicates", "zeros", "holes"])
@pytest.mark.parametrize("k", [1, 4, 16])
def test_topk_buffer_compaction_and_ties_match_naive(kind, k):
    # Several blocks per k: the candidate buffer fills, is cut to the k-th
    # distance, and (with many equal distances) has to grow.
    rng = np.random.default_rng(k * 7 + len(kind))
    n = 6 * BLOCK + 11
    codes, gen, tick, q = make_scan_case(rng, 2, n, kind)
    if kind == "duplicates":
        codes[:, ::2] = codes[:, :1]  # thousands of slots tied at one distance
    want = naive.topk(codes, n, q, gen, tick, k)
    slots = np.full(k, -1, np.int64)
    dists = np.empty(k, np.int64)
    found = K._topk(codes, n, q, gen, tick, *default_space(n), slots, dists)
    assert list(zip(slots[:found].tolist(), dists[:found].tolist())) == want
    slots[:] = -1
    found = K._topk_parallel(codes, n, q, gen, tick, *default_space(n), slots, dists, 2)
    assert list(zip(slots[:found].tolist(), dists[:found].tolist())) == want


def test_pick_best_takes_the_highest_cosine_then_the_latest_use():
    rng = np.random.default_rng(9)
    vectors = rng.standard_normal((8, 12)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[5] = vectors[2]  # a tie in cosine: the higher tick must win
    tick = np.arange(1, 9, dtype=np.uint32)
    q = vectors[2] + 0.01 * rng.standard_normal(12).astype(np.float32)
    q /= np.linalg.norm(q)
    slots = np.array([0, 2, 5, 7, -1, -1], np.int64)
    cosines = np.empty(6)
    K._rescore(vectors, np.zeros(0, np.float32), slots, q, cosines)
    assert cosines[4] == cosines[5] == -np.inf
    s, c = K._pick_best(slots, cosines, tick)
    want = max((naive.cosine(vectors[i], q), int(tick[i]), i) for i in (0, 2, 5, 7))
    assert s == want[2] == 5 and c == pytest.approx(want[0], abs=1e-6)
    assert K._pick_best(np.full(3, -1, np.int64), np.full(3, -np.inf), tick)[0] == -1


# ---------------------------------------------------------------- checking a loaded index

LINKS = ("prev", "nxt", "gen", "exp", "heap", "hpos", "vnorm", "state")


def built_index(ops, capacity, seed):
    """An index after random inserts (some with expiry), hits and releases."""
    index = Index(1, capacity)
    index.enable_expiry()
    index.vnorm = np.random.default_rng(seed).uniform(0.5, 2.0, capacity).astype(np.float32)
    rng = np.random.default_rng(seed)
    now = 0.0
    for op, arg in ops:
        now += 1.0
        live = check_invariants(index)
        if op == "insert":
            insert(index, rng, now, now + 1 + arg % 9 if arg % 3 else np.inf)
        elif op == "touch" and live:
            K._touch(index.prev, index.nxt, index.tick, index.count, index.created, index.seen,
                     index.state, live[arg % len(live)], now)
        elif op == "release" and live:
            index.release(live[arg % len(live)])
    return index


def verdicts(index):
    arrays = [getattr(index, name) for name in LINKS]
    problem, _ = K._check_slots(*arrays)
    return problem == 0, naive.slots_sound(*arrays)


index_ops = st.lists(st.tuples(st.sampled_from(["insert", "insert", "touch", "release"]),
                               st.integers(0, 10**6)), max_size=40)


@settings(max_examples=examples(150), deadline=None)
@given(index_ops, st.integers(1, 12), st.sampled_from(LINKS), st.integers(0, 10**6),
       st.sampled_from(["-2", "-1", "0", "1", "near", "hw", "odd", "nan", "inf", "swap"]))
def test_check_slots_agrees_with_naive_after_one_corruption(ops, capacity, name, at, how):
    index = built_index(ops, capacity, at)
    assert verdicts(index) == (True, True)  # every state the kernels make passes
    array = getattr(index, name)
    if name == "state":
        i = at % 6  # head, tail, free, high water, size, heap length
    elif array.shape[0] == 0:
        return
    else:
        i = at % max(1, min(array.shape[0], index.high_water + 1))
    hw = index.high_water
    if how == "swap":
        j = (i + 1 + at % 3) % array.shape[0]
        array[i], array[j] = array[j], array[i]
    elif how in ("nan", "inf"):
        if array.dtype.kind != "f":
            return
        array[i] = np.nan if how == "nan" else np.inf
    else:
        value = {"-2": -2, "-1": -1, "0": 0, "1": 1, "hw": hw, "odd": 2 * (at % 5) + 1,
                 "near": array[i].item() + (1 if at % 2 else -1)}[how]
        if array.dtype.kind == "u" and value < 0:
            value += 2**32
        array[i] = value
    assert verdicts(index)[0] == verdicts(index)[1]


def test_check_slots_names_each_broken_structure():
    index = built_index([("insert", 1), ("insert", 3), ("insert", 2), ("release", 0),
                         ("insert", 6)], 8, 0)
    arrays = {name: getattr(index, name) for name in LINKS}
    assert K._check_slots(*arrays.values()) == (0, -1)
    cases = [("nxt", lambda a, h: a.__setitem__(h, h), K.BAD_RECENCY),  # a cycle of one
             ("gen", lambda a, h: a.__setitem__(h, a[h] + 1), K.BAD_RECENCY),
             ("vnorm", lambda a, h: a.__setitem__(h, 0.0), K.BAD_NORM),
             ("exp", lambda a, h: a.__setitem__(h, 5.0), K.BAD_HEAP)]
    head = int(index.state[K.HEAD])
    if index.hpos[head] >= 0:
        cases[-1] = ("hpos", lambda a, h: a.__setitem__(h, -1), K.BAD_HEAP)
    for name, damage, want in cases:
        saved = arrays[name].copy()
        damage(arrays[name], head)
        assert K._check_slots(*arrays.values())[0] == want, name
        arrays[name][:] = saved
    index.state[K.FREE] = head  # the free list's head names a live slot
    assert K._check_slots(*arrays.values())[0] == K.BAD_FREE
