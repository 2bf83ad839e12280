"""Namespace scans, segments and the key table against the references in naive.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binary_semantic_cache import _kernels as K
from binary_semantic_cache._core.index import Index

from . import naive
from .conftest import check_invariants, examples, random_codes

SPACES = ("gen", "apos", "members", "nstart", "nlen", "ncap", "kslot", "kdisp", "state")


def spaces_arrays(index):
    members, nstart, nlen, ncap = index.seg
    named = dict(gen=index.gen, apos=index.apos, members=members, nstart=nstart, nlen=nlen,
                 ncap=ncap, kslot=index.kslot, kdisp=index.kdisp, state=index.state)
    return [named[name] for name in SPACES]


def verdicts(index):
    arrays = spaces_arrays(index)
    return K._check_spaces(*arrays)[0] == 0, naive.spaces_sound(*arrays)


def namespaced_case(rng, n_words, n, n_spaces):
    """Codes with many ties, and an arena where each slot sits in one of ``n_spaces``
    segments, as a scannable or key-only entry, among tombstones."""
    codes = random_codes(rng, n_words, n)
    if n:
        codes[:, :] = codes[:, rng.integers(0, n, size=n)]  # many exact ties
    gen = np.where(rng.random(n) < 0.8, 1, 2).astype(np.uint32)
    tick = (rng.permutation(n) + 1).astype(np.uint32)
    owner = rng.integers(0, n_spaces, size=n)
    members, apos, bounds = [], np.zeros(n, np.int32), []
    for x in range(n_spaces):
        lo = len(members)
        for s in rng.permutation(np.flatnonzero(owner == x)).tolist():
            if rng.random() < 0.1:
                members.append(K.TOMBSTONE)
            apos[s] = len(members) | (K.KEYED if rng.random() < 0.3 else 0)
            members.append(-s - 2 if rng.random() < 0.1 else s)
        bounds.append((lo, len(members)))
    return codes, gen, tick, apos, np.array(members + [K.TOMBSTONE], np.int32), bounds


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2200), st.sampled_from([1, 2, 4, 5]),
       st.integers(1, 5))
def test_namespace_scans_match_naive(seed, n, n_words, n_spaces):
    rng = np.random.default_rng(seed)
    codes, gen, tick, apos, members, bounds = namespaced_case(rng, n_words, n, n_spaces)
    q = codes[:, rng.integers(0, n)].copy() if n else random_codes(rng, n_words, 1)[:, 0]
    queries = np.ascontiguousarray(np.stack([q, random_codes(rng, n_words, 1)[:, 0]]))
    for lo, hi in bounds:
        space = (apos, members, lo, hi)
        best = naive.scan_top1(codes, n, q, gen, tick, space)
        s, d = K._scan_top1(codes, n, q, gen, tick, *space)
        assert (s, d if s >= 0 else None) == best
        s, d = K._scan_top1_parallel(codes, n, q, gen, tick, *space, 3)
        assert (s, d if s >= 0 else None) == best
        slots, dists = np.empty(2, np.int64), np.empty(2, np.int64)
        for run in (None, 2):
            if run:
                K._scan_batch_parallel(codes, n, queries, gen, tick, *space, slots, dists, run)
            else:
                K._scan_batch(codes, n, queries, gen, tick, *space, slots, dists)
            got = [(a, b if a >= 0 else None) for a, b in zip(slots.tolist(), dists.tolist())]
            assert got == [naive.scan_top1(codes, n, r, gen, tick, space) for r in queries]
        k = 1 + seed % 7
        out_s, out_d = np.full(k, -1, np.int64), np.empty(k, np.int64)
        found = K._topk(codes, n, q, gen, tick, *space, out_s, out_d)
        want_k = naive.topk(codes, n, q, gen, tick, k, space)
        assert list(zip(out_s[:found].tolist(), out_d[:found].tolist())) == want_k
        out_s[:] = -1
        found = K._topk_parallel(codes, n, q, gen, tick, *space, out_s, out_d, 2)
        assert list(zip(out_s[:found].tolist(), out_d[:found].tolist())) == want_k


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 300), st.sampled_from([1, 3, 4]))
def test_gather_scans_match_naive(seed, n, n_words):
    rng = np.random.default_rng(seed)
    codes, _, tick, apos, members, bounds = namespaced_case(rng, n_words, n, 2)
    gen = np.ones(n, np.uint32)  # a segment holds live entries (and tombstones) only
    lo, hi = bounds[0]
    space = (apos, members, lo, hi)
    chosen = [s for s in range(n) if naive.in_segment(space, s)]
    q = codes[:, chosen[0]].copy() if chosen else random_codes(rng, n_words, 1)[:, 0]
    want = naive.scan_top1(codes, 0, q, gen, tick, slots=chosen)
    got = K._gather_top1(codes, members, lo, hi - lo, q, tick)
    assert (got[0], got[1] if got[0] >= 0 else None) == want
    queries = np.ascontiguousarray(np.stack([q, ~q]))
    out_s, out_d = np.empty(2, np.int64), np.empty(2, np.int64)
    K._gather_batch(codes, members, lo, hi - lo, queries, tick, out_s, out_d)
    got = [(a, b if a >= 0 else None) for a, b in zip(out_s.tolist(), out_d.tolist())]
    assert got == [naive.scan_top1(codes, 0, r, gen, tick, slots=chosen) for r in queries]
    k = 1 + seed % 9
    out_s, out_d = np.full(k, -1, np.int64), np.empty(k, np.int64)
    found = K._gather_topk(codes, members, lo, hi - lo, q, tick, out_s, out_d)
    assert list(zip(out_s[:found].tolist(), out_d[:found].tolist())) == naive.topk(
        codes, 0, q, gen, tick, k, slots=chosen)


# ------------------------------------------------------------ the key table


@settings(max_examples=examples(80), deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10**6)), max_size=80),
       st.sampled_from([3, 8, 40]), st.integers(1, 6), st.sampled_from([1, 2, 7]))
def test_key_table_matches_a_dict(ops, n_slots, n_homes, gap):
    """Adds and removes under few distinct homes, so runs collide, interleave, shift and
    wrap."""
    size = n_slots + n_slots // 8 + 8
    kslot, kdisp = np.full(size, -1, np.int32), np.zeros(size, np.uint8)
    # Every slot in namespace 0's segment, so the namespace check passes for all.
    apos = np.arange(n_slots, dtype=np.int32) | K.KEYED
    members = np.arange(n_slots, dtype=np.int32)
    nstart, nlen = np.zeros(1, np.int32), np.array([n_slots], np.int32)
    model = {}  # slot -> key hash: home bucket, and a tag above bit 32
    homes = [(size - 3 + gap * h) % size for h in range(n_homes)]  # near the end: wraps
    hashes = [home | tag << 32 for home in homes for tag in (0, 5)]  # two tags per home
    mask = (1 << K._slot_bits(size)) - 1
    for add, value in ops:
        free = [s for s in range(n_slots) if s not in model]
        if add and free:
            s, hk = free[value % len(free)], hashes[value % len(hashes)]
            assert K._key_add(kslot, kdisp, hk, s)
            model[s] = hk
        elif not add and model:
            s = sorted(model)[value % len(model)]
            assert K._key_remove(kslot, kdisp, model.pop(s), s)
        for hk in set(hashes):
            found, start = [], -1
            while (hit := K._key_find(kslot, kdisp, apos, members, nstart, nlen, hk, 0,
                                      start))[0] >= 0:
                found.append(hit[0])
                start = hit[1] + 1
            assert sorted(found) == sorted(s for s, h in model.items() if h == hk)
        assert sorted(int(s) & mask for s in kslot if s >= 0) == sorted(model)
        assert not K._key_remove(kslot, kdisp, homes[0], n_slots + 5)  # never there


def test_a_run_past_the_longest_displacement_is_refused_unchanged():
    kslot, kdisp = np.full(300, -1, np.int32), np.zeros(300, np.uint8)
    for s in range(K.MAX_DISPLACEMENT + 1):
        assert K._key_add(kslot, kdisp, 5, s)
    before = kslot.copy(), kdisp.copy()
    assert not K._key_add(kslot, kdisp, 5, 999)
    assert not K._key_fits(kslot, kdisp, 5) and K._key_fits(kslot, kdisp, 5 + 256 + 1)
    assert np.array_equal(kslot, before[0]) and np.array_equal(kdisp, before[1])


# ------------------------------------------------------------ segments through the index


def build(ops, capacity, n_spaces, seed):
    """An Index after ``ops``, checked against a plain model after every step."""
    rng = np.random.default_rng(seed)
    index = Index(2, capacity)
    index.enable_keys(capacity + capacity // 8 + 8)
    index.reserve_namespace(n_spaces)
    model = {}  # slot -> (namespace, keyed, key-only, home)
    now = 0.0
    for op, arg in ops:
        now += 1.0
        live = check_invariants(index)
        if op == "insert":
            x = arg % n_spaces
            keyed = arg % 3 == 0
            key_only = keyed and arg % 2 == 1
            flags = x | (K.NEW_KEYED if keyed else 0) | (K.NEW_KEY_ONLY if key_only else 0)
            home = arg % index.kslot.shape[0]
            code = random_codes(rng, 2, 1).T.copy()
            done, slots, _, evicted, victims = index.insert(
                code, np.zeros(0), now, np.array([flags], np.int32), np.array([home], np.int64))
            assert done == 1
            if evicted:
                tail = live[-1]
                old = model.pop(tail)
                assert victims[0] == (tail if old[1] else -1)
                if old[1]:
                    assert index.remove_keys([old[3]], [tail]) == 0
            model[int(slots[0])] = (x, keyed, key_only, home)
        elif op == "release" and live:
            s = live[arg % len(live)]
            index.release(s)
            old = model.pop(s)
            if old[1]:
                assert index.remove_keys([old[3]], [s]) == 0
        elif op == "clear":
            x = arg % n_spaces
            gone = index.namespace_slots_of(x)
            assert sorted(gone.tolist()) == sorted(s for s, v in model.items() if v[0] == x)
            keyed = [s for s in gone.tolist() if model[s][1]]
            assert index.remove_keys([model[s][3] for s in keyed], keyed) == 0
            index.release_all(gone)
            for s in gone.tolist():
                del model[s]
        elif op == "compact":
            index.compact(arg % n_spaces if arg % 2 else -1, arg % 4)
        members, nstart, nlen, _ = index.seg
        for x in range(n_spaces):
            seg = members[nstart[x]:nstart[x] + nlen[x]].tolist()
            assert sorted(s for s in seg if s >= 0) == sorted(
                s for s, v in model.items() if v[0] == x and not v[2])
            assert sorted(-v - 2 for v in seg if v < -1) == sorted(
                s for s, v in model.items() if v[0] == x and v[2])
        assert index.counts()[:n_spaces].tolist() == [
            sum(1 for v in model.values() if v[0] == x) for x in range(n_spaces)]
        for s, (x, keyed, _, home) in model.items():
            assert index.in_namespace(s, x)
            if keyed:
                found, start = [], -1
                while (hit := index.find_key(home, x, start))[0] >= 0:
                    found.append(hit[0])
                    start = hit[1] + 1
                assert s in found
        assert verdicts(index) == (True, True)
    return index


space_ops = st.lists(st.tuples(st.sampled_from(["insert"] * 4 + ["release", "clear", "compact"]),
                               st.integers(0, 10**6)), max_size=60)


@settings(max_examples=examples(60), deadline=None)
@given(space_ops, st.integers(1, 12), st.integers(1, 4))
def test_segments_and_keys_follow_inserts_evictions_and_compactions(ops, capacity, n_spaces):
    build(ops, capacity, n_spaces, capacity)


def test_a_full_arena_is_compacted_and_every_row_lands():
    index = Index(1, 64)
    index.reserve_namespace(40)
    index.seg = (np.full(4, K.TOMBSTONE, np.int32),) + index.seg[1:]  # almost no room
    codes = np.arange(64, dtype=np.uint64)[:, None]
    flags = (np.arange(64) % 40).astype(np.int32)
    done, slots, ids, _, _ = index.insert(codes, np.zeros(0), 1.0, flags,
                                          flags.astype(np.int64))
    assert done == 64 and len(set(slots.tolist())) == 64 and len(ids) == 64
    assert index.seg[0].shape[0] > 64
    assert verdicts(index) == (True, True)
    assert index.counts()[:40].tolist() == [2] * 24 + [1] * 16


@settings(max_examples=examples(150), deadline=None)
@given(space_ops, st.integers(1, 10), st.integers(1, 3), st.sampled_from(SPACES[1:]),
       st.integers(0, 10**6), st.sampled_from(["-1", "0", "1", "near", "big", "swap", "keyed"]))
def test_check_spaces_agrees_with_naive_after_one_corruption(ops, capacity, n_spaces, name, at,
                                                             how):
    index = build(ops, capacity, n_spaces, at)
    arrays = dict(zip(SPACES, spaces_arrays(index)))
    array = arrays[name]
    if array.shape[0] == 0:
        return
    i = 7 if name == "state" else at % array.shape[0]
    if how == "swap":
        j = (i + 1 + at % 3) % array.shape[0]
        array[i], array[j] = array[j], array[i]
    else:
        value = {"-1": -1, "0": 0, "1": 1, "near": array[i].item() + (1 if at % 2 else -1),
                 "big": 2**29, "keyed": array[i].item() ^ K.KEYED}[how]
        array[i] = np.array(value).astype(array.dtype)
    assert verdicts(index)[0] == verdicts(index)[1]


def test_check_spaces_names_each_broken_structure():
    index = build([("insert", 0), ("insert", 3), ("insert", 1), ("insert", 4)], 8, 2, 0)
    assert K._check_spaces(*spaces_arrays(index)) == (0, -1)
    members, nstart, nlen, _ = index.seg
    keyed = int(np.flatnonzero(index.apos & K.KEYED)[0])
    cases = [(nlen, 0, 10**6, K.BAD_NAMESPACE),  # a segment longer than its room
             (index.apos, naive.slot_of(int(members[nstart[1]])),
              index.apos[naive.slot_of(int(members[nstart[1]]))] + 1, K.BAD_NAMESPACE),
             (index.apos, keyed, index.apos[keyed] ^ K.KEYED, K.BAD_NAMESPACE)]
    for array, i, value, want in cases:
        saved = array.copy()
        array[i] = value
        assert K._check_spaces(*spaces_arrays(index))[0] in (want, K.BAD_KEYS)
        array[:] = saved
    index.kslot[:] = -1
    assert K._check_spaces(*spaces_arrays(index))[0] == K.BAD_KEYS


@pytest.mark.parametrize("n", [0, 1, 7, 300])
def test_grown_index_keeps_segments_and_keys(n):
    index = build([("insert", 3 * i) for i in range(n)], max(n, 1), 3, n)
    grown = index.grown(2 * max(n, 1) + 5)
    assert verdicts(grown) == (True, True)
    assert np.array_equal(grown.kslot, index.kslot)
    assert grown.counts().tolist() == index.counts().tolist()


def test_a_row_whose_key_run_would_grow_too_long_stops_the_insert():
    index = Index(1, 400)
    index.enable_keys(460)
    n = K.MAX_DISPLACEMENT + 2
    flags = np.full(n, K.NEW_KEYED, np.int32)
    homes = np.full(n, 7, np.int64)  # every key under one home
    done, slots, _, _, _ = index.insert(np.zeros((n, 1), np.uint64), np.zeros(0), 1.0, flags,
                                        homes)
    assert done == n - 1 and slots[done] == -2
    assert index.size == n - 1 and verdicts(index) == (True, True)
