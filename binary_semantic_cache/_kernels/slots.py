"""Slot bookkeeping: the recency list, the expiry heap, the free list, and their check.

Taking a slot or giving one back also keeps its namespace's segment (``spaces``)
in step, and a new entry's key goes into the key table.
"""

import numba
import numpy as np

from .._core.jit import JIT
from .spaces import _key_add, _key_find, _key_fits, _ns_add, _ns_room
from .state import (
    FREE,
    HEAD,
    HEAPN,
    HW,
    ID_MASK,
    KEYED,
    NEW_KEY_ONLY,
    NEW_KEYED,
    POS_MASK,
    SIZE,
    TAIL,
    TICK,
    TICK_MAX,
    TOMBSTONE,
)

# ---------------------------------------------------------------- recency list


@numba.njit(**JIT)
def _unlink(prev, nxt, state, s):
    p = prev[s]
    x = nxt[s]
    if p >= 0:
        nxt[p] = x
    else:
        state[HEAD] = x
    if x >= 0:
        prev[x] = p
    else:
        state[TAIL] = p


@numba.njit(**JIT)
def _push_front(prev, nxt, state, s):
    h = state[HEAD]
    prev[s] = -1
    nxt[s] = h
    if h >= 0:
        prev[h] = s
    else:
        state[TAIL] = s
    state[HEAD] = s


@numba.njit(**JIT)
def _stamp(prev, tick, state, s):
    """Give slot ``s``, just moved to the head, the next recency tick.

    When the 32-bit counter would wrap, the live slots are renumbered 1..size
    from the tail: O(size) once per four billion uses.
    """
    t = state[TICK] + 1
    if t > TICK_MAX:
        t = 0
        k = state[TAIL]
        while k >= 0:
            t += 1
            tick[k] = t
            k = prev[k]
    else:
        tick[s] = t
    state[TICK] = t


@numba.njit(**JIT)
def _touch(prev, nxt, tick, count, created, seen, state, s, now):
    """Record a hit on slot ``s``: move it to the head, stamp it, count it."""
    if state[HEAD] != s:
        _unlink(prev, nxt, state, s)
        _push_front(prev, nxt, state, s)
    _stamp(prev, tick, state, s)
    seen[s] = now - created[s]
    if count[s] < TICK_MAX:
        count[s] += np.uint32(1)


# ---------------------------------------------------------------- expiry heap


@numba.njit(**JIT)
def _heap_swap(heap, hpos, i, j):
    a = heap[i]
    b = heap[j]
    heap[i] = b
    heap[j] = a
    hpos[b] = i
    hpos[a] = j


@numba.njit(**JIT)
def _heap_up(heap, hpos, exp, i):
    while i > 0:
        p = (i - 1) // 2
        if exp[heap[p]] <= exp[heap[i]]:
            break
        _heap_swap(heap, hpos, i, p)
        i = p


@numba.njit(**JIT)
def _heap_down(heap, hpos, exp, i, size):
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and exp[heap[c + 1]] < exp[heap[c]]:
            c += 1
        if exp[heap[i]] <= exp[heap[c]]:
            break
        _heap_swap(heap, hpos, i, c)
        i = c


@numba.njit(**JIT)
def _heap_push(heap, hpos, exp, state, s):
    i = state[HEAPN]
    state[HEAPN] = i + 1
    heap[i] = s
    hpos[s] = i
    _heap_up(heap, hpos, exp, i)


@numba.njit(**JIT)
def _heap_remove(heap, hpos, exp, state, s):
    i = hpos[s]
    if i < 0:
        return
    hpos[s] = -1
    size = state[HEAPN] - 1
    state[HEAPN] = size
    if i == size:
        return
    moved = heap[size]
    heap[i] = moved
    hpos[moved] = i
    _heap_up(heap, hpos, exp, i)
    _heap_down(heap, hpos, exp, hpos[moved], size)


# ---------------------------------------------------------------- slots


@numba.njit(**JIT)
def _release(prev, nxt, gen, exp, heap, hpos, apos, members, state, s):
    """Remove the live entry in slot ``s`` and put the slot on the free list.

    Its place in its namespace's segment becomes a tombstone. A key it had
    stays in the key table: the owner removes it, from the key (no hash is
    kept here), before the slot is used again.
    """
    _unlink(prev, nxt, state, s)
    gen[s] += np.uint32(1)
    prev[s] = -1
    nxt[s] = state[FREE]
    state[FREE] = s
    state[SIZE] -= 1
    if exp.shape[0] > 0:
        _heap_remove(heap, hpos, exp, state, s)
        exp[s] = np.inf
    p = apos[s] & POS_MASK
    if p < members.shape[0]:
        members[p] = TOMBSTONE
    apos[s] = 0


@numba.njit(**JIT)
def _purge_expired(prev, nxt, gen, exp, heap, hpos, apos, members, state, now, out, out_keyed):
    """Release every entry whose expiry time is ``<= now``; slots go to ``out``.

    ``out_keyed[i]`` tells whether ``out[i]`` had a key.
    """
    m = 0
    while state[HEAPN] > 0 and exp[heap[0]] <= now:
        s = heap[0]
        out_keyed[m] = apos[s] & KEYED != 0
        _release(prev, nxt, gen, exp, heap, hpos, apos, members, state, s)
        out[m] = s
        m += 1
    return m


@numba.njit(**JIT)
def _release_all(prev, nxt, gen, exp, heap, hpos, apos, members, state, slots):
    """``_release`` each of ``slots``, all live."""
    for s in slots:
        _release(prev, nxt, gen, exp, heap, hpos, apos, members, state, s)


@numba.njit(**JIT)
def _insert(codes, new, new_exp, new_ns, new_home, prev, nxt, gen, tick, count, created, seen,
            exp, heap, hpos, apos, members, nstart, nlen, ncap, kslot, kdisp, state, now,
            check_keys, out_slot, out_gen, out_victim):
    """Store each row of ``new``; returns ``(rows stored, live entries evicted)``.

    Row ``i`` goes to slot ``out_slot[i]`` at generation ``out_gen[i]`` (its
    entry id's parts: a later row of a large batch may take the same slot
    again), expires at ``new_exp[i]`` (an empty ``new_exp``: no row expires)
    and joins namespace ``new_ns[i] & ID_MASK``; with ``NEW_KEYED`` in
    ``new_ns[i]`` it is put in the key table under hash ``new_home[i]``,
    and with ``NEW_KEY_ONLY`` it is never scanned. ``out_victim[i]`` is the slot
    of a keyed entry evicted for the row, whose key the caller then removes
    from the table, else -1.

    Rows stop early, before any change for the row, in three cases the
    caller settles before passing the remaining rows again: its namespace's
    segment needs an arena compaction (``out_slot[i]`` is -1), its key's run
    in the table is too long (-2), or, with ``check_keys``, an entry of its
    namespace has a key of the same home and tag (``out_slot[i]`` is that slot and
    ``out_gen[i]`` is 0; the caller compares the keys, then replaces that
    entry or stores the row unchecked).

    A slot comes from the free list, then from never-used capacity, and only
    then from the least recently used entry. The caller sizes the arrays first.
    """
    capacity = codes.shape[1]
    evicted = 0
    for i in range(new.shape[0]):
        x = new_ns[i] & ID_MASK
        keyed = new_ns[i] & NEW_KEYED != 0
        if keyed and check_keys:
            found, _ = _key_find(kslot, kdisp, apos, members, nstart, nlen, new_home[i], x, -1)
            if found >= 0:
                out_slot[i] = found
                out_gen[i] = 0
                return i, evicted
        if not _ns_room(members, nstart, nlen, ncap, state, x):
            out_slot[i] = -1
            return i, evicted
        if keyed and not _key_fits(kslot, kdisp, new_home[i]):
            out_slot[i] = -2
            return i, evicted
        out_victim[i] = -1
        s = state[FREE]
        if s >= 0:
            state[FREE] = nxt[s]
        elif state[HW] < capacity:
            s = state[HW]
            state[HW] = s + 1
            gen[s] = 0
        else:
            s = state[TAIL]
            if apos[s] & KEYED:
                out_victim[i] = s
            _release(prev, nxt, gen, exp, heap, hpos, apos, members, state, s)
            state[FREE] = nxt[s]
            evicted += 1
        for w in range(codes.shape[0]):
            codes[w, s] = new[i, w]
        gen[s] += np.uint32(1)
        count[s] = 0
        created[s] = now
        seen[s] = 0.0
        _push_front(prev, nxt, state, s)
        _stamp(prev, tick, state, s)
        state[SIZE] += 1
        if exp.shape[0] > 0:
            exp[s] = new_exp[i] if new_exp.shape[0] > 0 else np.inf
            if exp[s] < np.inf:
                _heap_push(heap, hpos, exp, state, s)
        apos[s] = KEYED if keyed else 0
        _ns_add(members, nstart, nlen, ncap, apos, state, x,
                -s - 2 if new_ns[i] & NEW_KEY_ONLY else s, s)
        if keyed:
            _key_add(kslot, kdisp, new_home[i], s)
        out_slot[i] = s
        out_gen[i] = gen[s]
    return new.shape[0], evicted


@numba.njit(**JIT)
def _replace(codes, code, key_only, expires, prev, nxt, tick, count, created, seen, exp, heap,
             hpos, apos, members, state, now, s):
    """Give the keyed entry in slot ``s`` a new code (none when ``key_only``) and expiry,
    and count it as a use; its id, key and place stay."""
    p = apos[s] & POS_MASK
    members[p] = -s - 2 if key_only else s
    if not key_only:
        for w in range(codes.shape[0]):
            codes[w, s] = code[w]
    if exp.shape[0] > 0:
        _heap_remove(heap, hpos, exp, state, s)
        exp[s] = expires
        if expires < np.inf:
            _heap_push(heap, hpos, exp, state, s)
    created[s] = now
    _touch(prev, nxt, tick, count, created, seen, state, s, now)


# ---------------------------------------------------------------- loading

BAD_RECENCY, BAD_FREE, BAD_HEAP, BAD_NORM = 1, 2, 3, 4


@numba.njit(**JIT)
def _check_slots(prev, nxt, gen, exp, heap, hpos, vnorm, state):
    """``(0, -1)`` when the slot links of a loaded index are sound, else ``(problem, slot)``.

    Sound means what every other kernel assumes: the recency list runs from
    HEAD to TAIL through live slots only, each once, ``size`` of them, with
    ``prev`` mirroring ``nxt``; the free list covers every other used slot
    once; the heap holds each slot of finite expiry once, in heap order, with
    ``hpos`` its inverse; int8 norms are positive. Every walk stops after at
    most ``high_water`` steps, so a cycle cannot hang it.
    """
    hw = state[HW]
    size = state[SIZE]
    if not 0 <= hw <= prev.shape[0]:
        return BAD_RECENCY, -1
    seen = np.zeros(hw, np.bool_)
    s = state[HEAD]
    p = -1
    n = 0
    while s >= 0:
        if s >= hw or seen[s] or gen[s] & 1 == 0 or prev[s] != p or n == size:
            return BAD_RECENCY, s
        if vnorm.shape[0] > 0 and not 0.0 < vnorm[s] < np.inf:
            return BAD_NORM, s
        seen[s] = True
        n += 1
        p = s
        s = nxt[s]
    if s != -1 or n != size or state[TAIL] != p:
        return BAD_RECENCY, s
    s = state[FREE]
    while s >= 0:
        if s >= hw or seen[s] or gen[s] & 1 == 1:
            return BAD_FREE, s
        seen[s] = True
        n += 1
        s = nxt[s]
    if s != -1 or n != hw:
        return BAD_FREE, s
    heapn = state[HEAPN]
    if exp.shape[0] == 0:
        return (BAD_HEAP, -1) if heapn != 0 else (0, -1)
    if not 0 <= heapn <= size:
        return BAD_HEAP, -1
    for i in range(heapn):
        s = heap[i]
        if s < 0 or s >= hw or gen[s] & 1 == 0 or hpos[s] != i or not exp[s] < np.inf:
            return BAD_HEAP, s
        if i > 0 and exp[heap[(i - 1) // 2]] > exp[s]:
            return BAD_HEAP, s
    for s in range(hw):
        h = hpos[s]
        if h == -1:
            if exp[s] != np.inf:  # a finite expiry outside the heap would never be purged
                return BAD_HEAP, s
        elif not 0 <= h < heapn or heap[h] != s:
            return BAD_HEAP, s
    return 0, -1
