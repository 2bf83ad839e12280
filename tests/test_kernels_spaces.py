"""Namespace scans, segments and the key table against the references in naive.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binary_semantic_cache import _kernels as K
from binary_semantic_cache._core.index import Index

from . import naive
from .conftest import check_invariants, examples, random_codes

SPACES = ("gen", "ns", "npos", "members", "nstart", "nlen", "ncap", "nkey", "khash", "ktable",
          "state")


def spaces_arrays(index):
    members, nstart, nlen, ncap, nkey = index.seg
    named = dict(gen=index.gen, ns=index.ns, npos=index.npos, members=members, nstart=nstart,
                 nlen=nlen, ncap=ncap, nkey=nkey, khash=index.khash, ktable=index.ktable,
                 state=index.state)
    return [named[name] for name in SPACES]


def verdicts(index):
    arrays = spaces_arrays(index)
    return K._check_spaces(*arrays)[0] == 0, naive.spaces_sound(*arrays)


def namespaced_case(rng, n_words, n, n_spaces):
    codes = random_codes(rng, n_words, n)
    if n:
        codes[:, :] = codes[:, rng.integers(0, n, size=n)]  # many exact ties
    gen = np.where(rng.random(n) < 0.8, 1, 2).astype(np.uint32)
    tick = (rng.permutation(n) + 1).astype(np.uint32)
    ns = rng.integers(0, n_spaces, size=n).astype(np.int32)
    flags = rng.random(n)
    ns[flags < 0.2] |= K.KEYED
    ns[flags < 0.05] |= K.KEY_ONLY | K.KEYED
    return codes, gen, tick, ns


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2200), st.sampled_from([1, 2, 4, 5]),
       st.integers(1, 5))
def test_namespace_scans_match_naive(seed, n, n_words, n_spaces):
    rng = np.random.default_rng(seed)
    codes, gen, tick, ns = namespaced_case(rng, n_words, n, n_spaces)
    q = codes[:, rng.integers(0, n)].copy() if n else random_codes(rng, n_words, 1)[:, 0]
    queries = np.ascontiguousarray(np.stack([q, random_codes(rng, n_words, 1)[:, 0]]))
    for want in range(n_spaces):
        best = naive.scan_top1(codes, n, q, gen, tick, ns, want)
        s, d = K._scan_top1(codes, n, q, gen, tick, ns, want)
        assert (s, d if s >= 0 else None) == best
        s, d = K._scan_top1_parallel(codes, n, q, gen, tick, ns, want, 3)
        assert (s, d if s >= 0 else None) == best
        slots, dists = np.empty(2, np.int64), np.empty(2, np.int64)
        for run in (None, 2):
            if run:
                K._scan_batch_parallel(codes, n, queries, gen, tick, ns, want, slots, dists, run)
            else:
                K._scan_batch(codes, n, queries, gen, tick, ns, want, slots, dists)
            got = [(a, b if a >= 0 else None) for a, b in zip(slots.tolist(), dists.tolist())]
            assert got == [naive.scan_top1(codes, n, r, gen, tick, ns, want) for r in queries]
        k = 1 + seed % 7
        out_s, out_d = np.full(k, -1, np.int64), np.empty(k, np.int64)
        found = K._topk(codes, n, q, gen, tick, ns, want, out_s, out_d)
        want_k = naive.topk(codes, n, q, gen, tick, k, ns, want)
        assert list(zip(out_s[:found].tolist(), out_d[:found].tolist())) == want_k
        out_s[:] = -1
        found = K._topk_parallel(codes, n, q, gen, tick, ns, want, out_s, out_d, 2)
        assert list(zip(out_s[:found].tolist(), out_d[:found].tolist())) == want_k


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 300), st.sampled_from([1, 3, 4]))
def test_gather_scans_match_naive(seed, n, n_words):
    rng = np.random.default_rng(seed)
    codes, gen, tick, _ = namespaced_case(rng, n_words, max(n, 1), 1)
    gen[:] = 1
    members = np.zeros(n + 10, np.int32)
    chosen = rng.permutation(max(n, 1))[: n // 2].astype(np.int32)
    lo = int(rng.integers(0, 10))
    members[lo:lo + len(chosen)] = chosen
    m = len(chosen)
    q = codes[:, int(chosen[0])].copy() if m else random_codes(rng, n_words, 1)[:, 0]
    slots = chosen.tolist()
    assert K._gather_top1(codes, members, lo, m, q, tick) == (
        naive.scan_top1(codes, 0, q, gen, tick, slots=slots) if m else (-1, K.NO_DISTANCE))
    queries = np.ascontiguousarray(np.stack([q, ~q]))
    out_s, out_d = np.empty(2, np.int64), np.empty(2, np.int64)
    K._gather_batch(codes, members, lo, m, queries, tick, out_s, out_d)
    got = [(a, b if a >= 0 else None) for a, b in zip(out_s.tolist(), out_d.tolist())]
    assert got == [naive.scan_top1(codes, 0, r, gen, tick, slots=slots) for r in queries]
    k = 1 + seed % 9
    out_s, out_d = np.full(k, -1, np.int64), np.empty(k, np.int64)
    found = K._gather_topk(codes, members, lo, m, q, tick, out_s, out_d)
    assert list(zip(out_s[:found].tolist(), out_d[:found].tolist())) == naive.topk(
        codes, 0, q, gen, tick, k, slots=slots)


# ------------------------------------------------------------ the key table


@settings(max_examples=examples(80), deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40), st.integers(0, 3)), max_size=60),
       st.sampled_from([3, 8, 40]))
def test_key_table_matches_a_dict(ops, n_slots):
    """Adds and removes with few distinct hashes, so runs collide and wrap."""
    size = n_slots + n_slots // 4 + 8
    ktable = np.full(size, -1, np.int32)
    khash = np.zeros(n_slots, np.uint32)
    ns = np.zeros(n_slots, np.int32)
    gen = np.zeros(n_slots, np.uint32)
    model = {}  # slot -> (hash, namespace)
    for add, value, space in ops:
        free = [s for s in range(n_slots) if s not in model]
        if add and free:
            s = free[value % len(free)]
            h = (value % 5) * 0x33333333 + (0xFFFFFFF0 if value % 7 == 0 else 0)
            h &= 0xFFFFFFFF
            ns[s] = space | K.KEYED
            gen[s] = 1
            K._key_add(ktable, khash, s, h)
            model[s] = (h, space)
        elif not add and model:
            s = sorted(model)[value % len(model)]
            K._key_remove(ktable, khash, s)
            gen[s] = 2
            del model[s]
        for h, space in set(model.values()):
            found, start = [], -1
            while True:
                s, bucket = K._key_find(ktable, khash, ns, h, space, start)
                if s < 0:
                    break
                found.append(s)
                start = bucket + 1
            assert sorted(found) == sorted(s for s, v in model.items() if v == (h, space))
        assert K._key_find(ktable, khash, ns, 12345, 9, -1)[0] == -1
        assert sorted(int(s) for s in ktable if s >= 0) == sorted(model)


# ------------------------------------------------------------ segments through the index


def build(ops, capacity, n_spaces, seed, keyed=True):
    """An Index after ``ops``, checked against a plain model after every step."""
    rng = np.random.default_rng(seed)
    index = Index(2, capacity)
    index.enable_keys()
    index.reserve_namespace(n_spaces)
    model = {}  # slot -> namespace word
    now = 0.0
    for op, arg in ops:
        now += 1.0
        live = check_invariants(index)
        if op == "insert":
            x = arg % n_spaces
            word = x | (K.KEYED if keyed and arg % 3 == 0 else 0)
            word |= K.KEY_ONLY if word & K.KEYED and arg % 2 else 0
            code = random_codes(rng, 2, 1).T.copy()
            done, slots, _, evicted = index.insert(code, np.zeros(0), now,
                                                   np.array([word], np.int32),
                                                   np.array([arg * 2654435761 % 2**32],
                                                            np.uint32))
            assert done == 1
            if evicted:
                tail = live[-1]
                del model[tail]
            model[int(slots[0])] = word
        elif op == "release" and live:
            s = live[arg % len(live)]
            index.release(s)
            del model[s]
        elif op == "clear":
            x = arg % n_spaces
            gone = index.namespace_slots_of(x)
            assert sorted(gone.tolist()) == sorted(s for s, w in model.items()
                                                   if w & K.ID_MASK == x)
            index.release_all(gone)
            for s in gone.tolist():
                del model[s]
        elif op == "compact":
            index.compact(arg % n_spaces if arg % 2 else -1, arg % 4)
        members, nstart, nlen, _, nkey = index.seg
        for x in range(n_spaces):
            seg = set(members[nstart[x]:nstart[x] + nlen[x]].tolist())
            assert seg == {s for s, w in model.items() if w & K.ID_MASK == x
                           and not w & K.KEY_ONLY}
            assert nkey[x] == sum(1 for w in model.values()
                                  if w & K.ID_MASK == x and w & K.KEY_ONLY)
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
    index.seg = (np.zeros(4, np.int32),) + index.seg[1:]  # almost no room to start with
    codes = np.arange(64, dtype=np.uint64)[:, None]
    flags = (np.arange(64) % 40).astype(np.int32)
    done, slots, ids, _ = index.insert(codes, np.zeros(0), 1.0, flags, flags.view(np.uint32))
    assert done == 64 and len(set(slots.tolist())) == 64 and len(ids) == 64
    assert index.seg[0].shape[0] > 64
    assert verdicts(index) == (True, True)
    assert index.counts()[:40].tolist() == [2] * 24 + [1] * 16


@settings(max_examples=examples(150), deadline=None)
@given(space_ops, st.integers(1, 10), st.integers(1, 3), st.sampled_from(SPACES[1:]),
       st.integers(0, 10**6), st.sampled_from(["-1", "0", "1", "near", "big", "swap", "flag"]))
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
                 "big": 2**30, "flag": array[i].item() ^ K.KEY_ONLY}[how]
        if array.dtype.kind == "u":
            value %= 2**32
        array[i] = value
    assert verdicts(index)[0] == verdicts(index)[1]


def test_check_spaces_names_each_broken_structure():
    index = build([("insert", 0), ("insert", 3), ("insert", 1), ("insert", 4)], 8, 2, 0)
    assert K._check_spaces(*spaces_arrays(index)) == (0, -1)
    members, nstart, nlen, ncap, nkey = index.seg
    keyed = int(np.flatnonzero(index.ns & K.KEYED)[0])
    cases = [(nlen, 0, nlen[0] + 1, K.BAD_NAMESPACE),  # a segment longer than its room
             (index.npos, int(members[nstart[1]]), 5, K.BAD_NAMESPACE),
             (index.khash, keyed, index.khash[keyed] ^ 0x80000000, K.BAD_KEYS)]
    for array, i, value, want in cases:
        saved = array.copy()
        array[i] = value
        assert K._check_spaces(*spaces_arrays(index))[0] == want
        array[:] = saved
    index.ktable[:] = -1
    assert K._check_spaces(*spaces_arrays(index))[0] == K.BAD_KEYS


@pytest.mark.parametrize("n", [0, 1, 7, 300])
def test_grown_index_keeps_segments_and_rebuilds_the_key_table(n):
    index = build([("insert", 3 * i) for i in range(n)], max(n, 1), 3, n)
    grown = index.grown(2 * max(n, 1) + 5)
    assert verdicts(grown) == (True, True)
    assert grown.ktable.shape[0] > index.ktable.shape[0]
    for s in np.flatnonzero(index.ns[:index.high_water] & K.KEYED).tolist():
        if index.gen[s] % 2:
            found, start = [], -1
            while (hit := grown.find_key(int(grown.khash[s]), int(grown.ns[s]) & K.ID_MASK,
                                         start))[0] >= 0:
                found.append(hit[0])
                start = hit[1] + 1
            assert s in found
