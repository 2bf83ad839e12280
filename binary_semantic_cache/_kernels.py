"""Every compiled kernel of the package.

Kernels take only arrays and scalars; the classes that own the arrays validate
input and call them. Layout, shared by all kernels:

* ``codes``: ``uint64[n_words, capacity]``, one column per slot. Column-wise
  storage lets LLVM vectorise the popcount across slots.
* ``prev``/``nxt``: ``int32[capacity]``, the doubly linked recency list of live
  slots (head = most recently used). A free slot is chained through ``nxt``.
* ``gen``: ``uint32[capacity]``, odd while the slot holds a live entry. It
  advances on every allocation and release, so an entry id (``gen << 32 | slot``)
  never names a later occupant of the same slot.
* ``count``: ``uint32[capacity]`` hits served; ``created``/``last``:
  ``float64[capacity]`` epoch seconds.
* ``exp``/``heap``/``hpos``: expiry times and an indexed min-heap over the slots
  that have one. Zero-length until the first entry with a time to live.
* ``state``: ``int64[8]`` holding the scalars below, so kernels can update them.
"""

import numba
import numpy as np
from numba import prange

from ._jit import BLOCK, DISABLE_JIT, JIT, JIT_PARALLEL

HEAD, TAIL, FREE, HW, SIZE, HEAPN = 0, 1, 2, 3, 4, 5
STATE_LEN = 8
NO_DISTANCE = np.int64(1 << 40)

if DISABLE_JIT:

    def _popcount(x):
        return int(x).bit_count()

else:

    @numba.extending.intrinsic
    def _popcount(typingctx, x):
        """LLVM ``ctpop``: a single POPCNT (or a vector popcount) instruction."""
        if not isinstance(x, numba.types.Integer):
            return None

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return numba.types.int64(x), codegen


@numba.njit(**JIT)
def _hamming(a, b):
    d = 0
    for w in range(a.shape[0]):
        d += _popcount(a[w] ^ b[w])
    return d


@numba.njit(**JIT)
def _ahead_in_lru(a, b, prev, n):
    """True if slot ``a`` is nearer the head of the recency list than ``b``.

    Walks from both slots toward the head in step, so the cost is the distance
    between them; bounded by ``n`` so a list being relinked by another thread
    cannot trap the walk.
    """
    x = prev[a]
    y = prev[b]
    for _ in range(n + 1):
        if x == b or y < 0:
            return False
        if y == a or x < 0:
            return True
        x = prev[x]
        y = prev[y]
    return False


@numba.njit(**JIT)
def _better(a, da, b, db, last, prev, n):
    """Does slot ``a`` at distance ``da`` beat slot ``b`` at ``db``?

    Lower distance wins; on a tie, the more recently used slot.
    """
    if b < 0:
        return True
    if da != db:
        return da < db
    if last[a] != last[b]:
        return last[a] > last[b]
    return _ahead_in_lru(a, b, prev, n)


@numba.njit(**JIT)
def _block_distances(blk, q, dist):
    m = blk.shape[1]
    for j in range(m):
        dist[j] = 0
    for w in range(blk.shape[0]):
        row = blk[w]
        qw = q[w]
        for j in range(m):
            dist[j] += _popcount(row[j] ^ qw)
    lo = NO_DISTANCE
    for j in range(m):
        lo = min(lo, dist[j])
    return lo


@numba.njit(**JIT)
def _block_top1(blk, base, q, gen, last, prev, n, dist, best, best_d):
    """Fold one block of codes (slots ``base..``) into the running best."""
    if _block_distances(blk, q, dist) > best_d:
        return best, best_d
    for j in range(blk.shape[1]):
        d = dist[j]
        if d <= best_d:
            s = base + j
            if gen[s] & 1 and _better(s, d, best, best_d, last, prev, n):
                best = s
                best_d = d
    return best, best_d


@numba.njit(**JIT)
def _scan_range(codes, lo, hi, q, gen, last, prev, n):
    dist = np.empty(BLOCK, np.int64)
    part = codes[:, lo:hi]
    best = -1
    best_d = NO_DISTANCE
    for start in range(0, hi - lo, BLOCK):
        blk = part[:, start : start + BLOCK]
        best, best_d = _block_top1(blk, lo + start, q, gen, last, prev, n, dist, best, best_d)
    return best, best_d


@numba.njit(**JIT)
def _scan_top1(codes, n, q, gen, last, prev):
    """Nearest live slot to ``q`` among the first ``n`` slots: ``(slot, distance)``.

    ``slot`` is -1 when no slot is live.
    """
    return _scan_range(codes, 0, n, q, gen, last, prev, n)


@numba.njit(**JIT_PARALLEL)
def _scan_top1_parallel(codes, n, q, gen, last, prev, n_chunks):
    """``_scan_top1`` split over ``n_chunks`` threads."""
    per = (n + n_chunks - 1) // n_chunks
    per = (per + BLOCK - 1) // BLOCK * BLOCK
    slots = np.full(n_chunks, -1, np.int64)
    dists = np.full(n_chunks, NO_DISTANCE, np.int64)
    for c in prange(n_chunks):
        lo = min(n, c * per)
        hi = min(n, lo + per)
        slots[c], dists[c] = _scan_range(codes, lo, hi, q, gen, last, prev, n)
    best = -1
    best_d = NO_DISTANCE
    for c in range(n_chunks):
        if slots[c] >= 0 and _better(slots[c], dists[c], best, best_d, last, prev, n):
            best = slots[c]
            best_d = dists[c]
    return best, best_d


@numba.njit(**JIT)
def _scan_batch_range(codes, n, queries, qlo, qhi, gen, last, prev, out_slot, out_dist):
    # Blocks outermost: each block of codes is loaded once and stays in cache
    # while every query of the range is compared with it.
    dist = np.empty(BLOCK, np.int64)
    for i in range(qlo, qhi):
        out_slot[i] = -1
        out_dist[i] = NO_DISTANCE
    whole = codes[:, :n]
    for start in range(0, n, BLOCK):
        blk = whole[:, start : start + BLOCK]
        for i in range(qlo, qhi):
            out_slot[i], out_dist[i] = _block_top1(
                blk, start, queries[i], gen, last, prev, n, dist, out_slot[i], out_dist[i]
            )


@numba.njit(**JIT)
def _scan_batch(codes, n, queries, gen, last, prev, out_slot, out_dist):
    """Nearest live slot for each row of ``queries``, into ``out_slot``/``out_dist``."""
    _scan_batch_range(codes, n, queries, 0, queries.shape[0], gen, last, prev, out_slot, out_dist)


@numba.njit(**JIT_PARALLEL)
def _scan_batch_parallel(codes, n, queries, gen, last, prev, out_slot, out_dist, n_chunks):
    """``_scan_batch`` with the queries split over ``n_chunks`` threads."""
    nq = queries.shape[0]
    per = (nq + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        qlo = min(nq, c * per)
        qhi = min(nq, qlo + per)
        _scan_batch_range(codes, n, queries, qlo, qhi, gen, last, prev, out_slot, out_dist)


@numba.njit(**JIT)
def _topk(codes, n, q, gen, last, prev, out_slot, out_dist):
    """The ``len(out_slot)`` nearest live slots, best first; returns how many."""
    k = out_slot.shape[0]
    if k == 0:
        return 0
    dist = np.empty(BLOCK, np.int64)
    whole = codes[:, :n]
    found = 0
    for start in range(0, n, BLOCK):
        blk = whole[:, start : start + BLOCK]
        lo = _block_distances(blk, q, dist)
        if found == k and lo > out_dist[k - 1]:
            continue
        for j in range(blk.shape[1]):
            s = start + j
            d = dist[j]
            if not gen[s] & 1:
                continue
            if found == k and not _better(s, d, out_slot[k - 1], out_dist[k - 1], last, prev, n):
                continue
            if found < k:
                found += 1
            i = found - 1
            while i > 0 and _better(s, d, out_slot[i - 1], out_dist[i - 1], last, prev, n):
                out_slot[i] = out_slot[i - 1]
                out_dist[i] = out_dist[i - 1]
                i -= 1
            out_slot[i] = s
            out_dist[i] = d
    return found


@numba.njit(**JIT)
def _distances(codes, n, q, out):
    """Hamming distance from ``q`` to each of the first ``n`` columns of ``codes``."""
    dist = np.empty(BLOCK, np.int64)
    whole = codes[:, :n]
    for start in range(0, n, BLOCK):
        blk = whole[:, start : start + BLOCK]
        _block_distances(blk, q, dist)
        for j in range(blk.shape[1]):
            out[start + j] = dist[j]


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
def _touch(prev, nxt, count, last, state, s, now):
    """Record a hit on slot ``s``: move it to the head, stamp it, count it."""
    if state[HEAD] != s:
        _unlink(prev, nxt, state, s)
        _push_front(prev, nxt, state, s)
    last[s] = now
    if count[s] < np.uint32(0xFFFFFFFF):
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
def _release(prev, nxt, gen, exp, heap, hpos, state, s):
    """Remove the live entry in slot ``s`` and put the slot on the free list."""
    _unlink(prev, nxt, state, s)
    gen[s] += np.uint32(1)
    prev[s] = -1
    nxt[s] = state[FREE]
    state[FREE] = s
    state[SIZE] -= 1
    if exp.shape[0] > 0:
        _heap_remove(heap, hpos, exp, state, s)
        exp[s] = np.inf


@numba.njit(**JIT)
def _purge_expired(prev, nxt, gen, exp, heap, hpos, state, now, out):
    """Release every entry whose expiry time is ``<= now``; slots go to ``out``."""
    m = 0
    while state[HEAPN] > 0 and exp[heap[0]] <= now:
        s = heap[0]
        _release(prev, nxt, gen, exp, heap, hpos, state, s)
        out[m] = s
        m += 1
    return m


@numba.njit(**JIT)
def _insert(codes, new, new_exp, prev, nxt, gen, count, created, last, exp, heap, hpos,
            state, now, out_slot):
    """Store each row of ``new``; returns how many live entries were evicted.

    A slot comes from the free list, then from never-used capacity, and only
    then from the least recently used entry. The caller sizes the arrays first.
    """
    capacity = codes.shape[1]
    evicted = 0
    for i in range(new.shape[0]):
        s = state[FREE]
        if s >= 0:
            state[FREE] = nxt[s]
        elif state[HW] < capacity:
            s = state[HW]
            state[HW] = s + 1
            gen[s] = 0
        else:
            s = state[TAIL]
            _release(prev, nxt, gen, exp, heap, hpos, state, s)
            state[FREE] = nxt[s]
            evicted += 1
        for w in range(codes.shape[0]):
            codes[w, s] = new[i, w]
        gen[s] += np.uint32(1)
        count[s] = 0
        created[s] = now
        last[s] = now
        _push_front(prev, nxt, state, s)
        state[SIZE] += 1
        if exp.shape[0] > 0:
            exp[s] = new_exp[i]
            if new_exp[i] < np.inf:
                _heap_push(heap, hpos, exp, state, s)
        out_slot[i] = s
    return evicted
