"""Namespaces and exact keys: the segment arena and the key table, and their check."""

import numba
import numpy as np

from .._core.jit import JIT
from .state import HW, ID_MASK, KEY_ONLY, KEYED, MTOP, SIZE

# ---------------------------------------------------------------- namespace segments


@numba.njit(**JIT)
def _grown_cap(cap):
    return cap + (cap >> 1) + 2


@numba.njit(**JIT)
def _ns_room(members, nstart, nlen, ncap, state, x):
    """Can namespace ``x`` take one more slot without compacting the arena?"""
    if nlen[x] < ncap[x]:
        return True
    top = state[MTOP]
    if nstart[x] + ncap[x] == top and top < members.shape[0]:
        return True
    return top + _grown_cap(ncap[x]) <= members.shape[0]


@numba.njit(**JIT)
def _ns_add(members, nstart, nlen, ncap, npos, state, x, s):
    """Append slot ``s`` to namespace ``x``'s segment; ``_ns_room`` must hold."""
    if nlen[x] == ncap[x]:
        top = state[MTOP]
        want = _grown_cap(ncap[x])
        if nstart[x] + ncap[x] == top and top < members.shape[0]:
            # The last segment grows in place into the free top.
            grow = min(want - ncap[x], members.shape[0] - top)
            ncap[x] += grow
            state[MTOP] = top + grow
        else:
            # Copied, never moved: a lock-free reader may still scan the old place.
            start = nstart[x]
            for i in range(nlen[x]):
                members[top + i] = members[start + i]
            nstart[x] = top
            ncap[x] = want
            state[MTOP] = top + want
    p = nlen[x]
    members[nstart[x] + p] = s
    npos[s] = p
    nlen[x] = p + 1


@numba.njit(**JIT)
def _ns_remove(members, nstart, nlen, npos, x, s):
    """Take slot ``s`` out of namespace ``x``'s segment; the last member fills its place."""
    p = npos[s]
    last = nlen[x] - 1
    t = members[nstart[x] + last]
    members[nstart[x] + p] = t
    npos[t] = p
    nlen[x] = last
    npos[s] = -1


@numba.njit(**JIT)
def _ns_compact(members, nstart, nlen, ncap, last, out, out_start, out_cap):
    """Lay every segment out afresh in ``out``; returns the new top.

    Each namespace gets an eighth more room than it holds, namespace ``last``
    is laid out at the end, so it can grow in place into what is left.
    """
    top = 0
    n = nstart.shape[0]
    for k in range(n + 1):
        x = k if k < n else last
        if k == last or (k == n and last < 0):
            continue
        out_start[x] = top
        out_cap[x] = nlen[x] + (nlen[x] >> 3)
        for i in range(nlen[x]):
            out[top + i] = members[nstart[x] + i]
        top += out_cap[x]
    return top


# ---------------------------------------------------------------- key table


@numba.njit(**JIT)
def _home(h, size):
    """Bucket of hash ``h`` in a table of ``size``: multiply-shift, no power of two needed."""
    return np.int64((np.uint64(h) * np.uint64(size)) >> np.uint64(32))


@numba.njit(**JIT)
def _key_find(ktable, khash, ns, h, want, start):
    """First slot from bucket ``start`` (-1: its home) of hash ``h`` in namespace ``want``.

    Returns ``(slot, bucket)``, slot -1 when there is none. Hashes can
    collide: the caller compares the keys and, on a mismatch, probes on
    from ``bucket + 1``.
    """
    size = ktable.shape[0]
    i = _home(h, size) if start < 0 else start % size
    for _ in range(size):
        s = ktable[i]
        if s < 0:
            return -1, -1
        if khash[s] == h and ns[s] & ID_MASK == want:
            return s, i
        i += 1
        if i == size:
            i = 0
    return -1, -1


@numba.njit(**JIT)
def _key_add(ktable, khash, s, h):
    khash[s] = h
    size = ktable.shape[0]
    i = _home(h, size)
    while ktable[i] >= 0:
        i += 1
        if i == size:
            i = 0
    ktable[i] = s


@numba.njit(**JIT)
def _key_remove(ktable, khash, s):
    """Delete slot ``s`` from the table, shifting later entries of its run back."""
    size = ktable.shape[0]
    i = _home(khash[s], size)
    while ktable[i] != s:
        i += 1
        if i == size:
            i = 0
    j = i
    while True:
        j += 1
        if j == size:
            j = 0
        t = ktable[j]
        if t < 0:
            break
        k = _home(khash[t], size)
        # t may move back to i only if its home is not cyclically within (i, j].
        if (i < j and i < k <= j) or (i > j and (k > i or k <= j)):
            continue
        ktable[i] = t
        i = j
    ktable[i] = -1


@numba.njit(**JIT)
def _key_rebuild(ktable, khash, ns, gen, n):
    """Fill an empty table with every live keyed slot below ``n``."""
    for s in range(n):
        if gen[s] & 1 and ns[s] & KEYED:
            _key_add(ktable, khash, s, khash[s])


@numba.njit(**JIT)
def _ns_slots(ns, gen, n, x, out):
    """Live slots of namespace ``x`` (scannable or key-only) into ``out``; returns how many."""
    m = 0
    for s in range(n):
        if gen[s] & 1 and ns[s] & ID_MASK == x:
            out[m] = s
            m += 1
    return m


# ---------------------------------------------------------------- loading

BAD_NAMESPACE, BAD_KEYS = 5, 6


@numba.njit(**JIT)
def _check_spaces(gen, ns, npos, members, nstart, nlen, ncap, nkey, khash, ktable, state):
    """``(0, -1)`` when segments and key table agree with the slots, else ``(problem, slot)``.

    Sound means: segments lie inside the arena below its top and do not
    overlap; each holds live, scannable slots of its namespace whose ``npos``
    points back; every live slot is counted once, in a segment or in
    ``nkey``; the key table holds each live keyed slot once, reachable from
    its home before an empty bucket, and has an empty bucket.
    """
    hw = state[HW]
    top = state[MTOP]
    n_ns = nstart.shape[0]
    if not 0 <= top <= members.shape[0]:
        return BAD_NAMESPACE, -1
    owner = np.full(top, -1, np.int64)
    counted = np.zeros(hw, np.bool_)
    total = 0
    for x in range(n_ns):
        a, m, c = nstart[x], nlen[x], ncap[x]
        if m < 0 or c < m or nkey[x] < 0 or (c > 0 and (a < 0 or a + c > top)):
            return BAD_NAMESPACE, -1
        for p in range(c):
            if owner[a + p] >= 0:
                return BAD_NAMESPACE, -1
            owner[a + p] = x
        for p in range(m):
            s = members[a + p]
            if (s < 0 or s >= hw or counted[s] or gen[s] & 1 == 0 or npos[s] != p
                    or ns[s] & ID_MASK != x or ns[s] & KEY_ONLY):
                return BAD_NAMESPACE, s
            counted[s] = True
        total += m + nkey[x]
    keyed = 0
    key_only = np.zeros(n_ns, np.int64)
    for s in range(hw):
        if gen[s] & 1 == 0:
            continue
        x = ns[s] & ID_MASK
        if ns[s] < 0 or x >= n_ns or (ns[s] & KEY_ONLY and not ns[s] & KEYED):
            return BAD_NAMESPACE, s
        if ns[s] & KEY_ONLY:
            key_only[x] += 1
        elif not counted[s]:
            return BAD_NAMESPACE, s
        if ns[s] & KEYED:
            keyed += 1
    if total != state[SIZE]:
        return BAD_NAMESPACE, -1
    for x in range(n_ns):
        if key_only[x] != nkey[x]:
            return BAD_NAMESPACE, -1
    if ktable.shape[0] == 0:
        return (BAD_KEYS, -1) if keyed else (0, -1)
    size = ktable.shape[0]
    if khash.shape[0] < hw or keyed >= size:
        return BAD_KEYS, -1
    empty = -1
    for i in range(size):
        if ktable[i] < 0:
            empty = i
            break
    if empty < 0:
        return BAD_KEYS, -1
    # One walk from an empty bucket: each entry's home must lie within the
    # run of full buckets that ends at it, or a probe from there stops short.
    found = np.zeros(hw, np.bool_)
    n_found = 0
    run = 0  # full buckets since the last empty one, this one included
    for step in range(1, size + 1):
        i = (empty + step) % size
        s = ktable[i]
        if s < 0:
            run = 0
            continue
        run += 1
        if s >= hw or found[s] or gen[s] & 1 == 0 or not ns[s] & KEYED:
            return BAD_KEYS, s
        back = (i - _home(khash[s], size)) % size  # probes from its home to here
        if back >= run:
            return BAD_KEYS, s
        found[s] = True
        n_found += 1
    if n_found != keyed:
        return BAD_KEYS, -1
    return 0, -1
