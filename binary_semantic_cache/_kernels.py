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
* ``tick``: ``uint32[capacity]``, the recency order as a number: higher is more
  recent. Breaks distance ties without walking the list.
* ``count``: ``uint32[capacity]`` hits served.
* ``created``: ``float64[capacity]`` epoch seconds of the put; ``seen``:
  ``float32[capacity]`` seconds from the put to the latest use. Relative to the
  put, the last-use time keeps sub-millisecond precision for a day-old entry
  while the whole record stays at 64 bytes for 256-bit codes.
* ``exp``/``heap``/``hpos``: expiry times and an indexed min-heap over the slots
  that have one. Zero-length until the first entry with a time to live.
* ``state``: ``int64[8]`` holding the scalars below, so kernels can update them.
"""

import numba
import numpy as np
from numba import prange

from ._jit import BLOCK, DISABLE_JIT, JIT, JIT_PARALLEL

HEAD, TAIL, FREE, HW, SIZE, HEAPN, TICK = 0, 1, 2, 3, 4, 5, 6
STATE_LEN = 8
TICK_MAX = np.uint32(0xFFFFFFFF)
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
def _pack_signs(proj, out):
    """Bit ``i`` of row ``r`` is ``proj[r, i] > 0``, in word ``i // 64`` at ``i % 64``."""
    for r in range(proj.shape[0]):
        for w in range(out.shape[1]):
            word = np.uint64(0)
            for b in range(64):
                if proj[r, w * 64 + b] > 0:
                    word |= np.uint64(1) << np.uint64(b)
            out[r, w] = word


@numba.njit(**JIT)
def _hamming(a, b):
    d = 0
    for w in range(a.shape[0]):
        d += _popcount(a[w] ^ b[w])
    return d


@numba.njit(**JIT)
def _better(a, da, b, db, tick):
    """Does slot ``a`` at distance ``da`` beat slot ``b`` at ``db``?

    Lower distance wins; on a tie, the more recently used slot (higher tick).
    """
    return b < 0 or da < db or (da == db and tick[a] > tick[b])


@numba.njit(**JIT)
def _set4(codes, w, lo, m, q, dist):
    # Four words per pass, fused: one load and one store of dist per slot
    # instead of four, and no loop over words for LLVM to see through.
    r0, r1 = codes[w, lo : lo + m], codes[w + 1, lo : lo + m]
    r2, r3 = codes[w + 2, lo : lo + m], codes[w + 3, lo : lo + m]
    q0, q1, q2, q3 = q[w], q[w + 1], q[w + 2], q[w + 3]
    least = NO_DISTANCE
    for j in range(m):
        d = (_popcount(r0[j] ^ q0) + _popcount(r1[j] ^ q1)
             + _popcount(r2[j] ^ q2) + _popcount(r3[j] ^ q3))
        dist[j] = d
        least = min(least, d)
    return least


@numba.njit(**JIT)
def _add4(codes, w, lo, m, q, dist):
    r0, r1 = codes[w, lo : lo + m], codes[w + 1, lo : lo + m]
    r2, r3 = codes[w + 2, lo : lo + m], codes[w + 3, lo : lo + m]
    q0, q1, q2, q3 = q[w], q[w + 1], q[w + 2], q[w + 3]
    least = NO_DISTANCE
    for j in range(m):
        d = dist[j] + (_popcount(r0[j] ^ q0) + _popcount(r1[j] ^ q1)
                       + _popcount(r2[j] ^ q2) + _popcount(r3[j] ^ q3))
        dist[j] = d
        least = min(least, d)
    return least


@numba.njit(**JIT)
def _add2(codes, w, lo, m, q, dist):
    r0, r1 = codes[w, lo : lo + m], codes[w + 1, lo : lo + m]
    q0, q1 = q[w], q[w + 1]
    least = NO_DISTANCE
    for j in range(m):
        d = dist[j] + _popcount(r0[j] ^ q0) + _popcount(r1[j] ^ q1)
        dist[j] = d
        least = min(least, d)
    return least


@numba.njit(**JIT)
def _add1(codes, w, lo, m, q, dist):
    r0 = codes[w, lo : lo + m]
    q0 = q[w]
    least = NO_DISTANCE
    for j in range(m):
        d = dist[j] + _popcount(r0[j] ^ q0)
        dist[j] = d
        least = min(least, d)
    return least


@numba.njit(**JIT)
def _block_distances(codes, lo, m, q, dist):
    """Distances from ``q`` to slots ``lo..lo+m`` into ``dist[:m]``; returns their minimum.

    Row slices of a C-contiguous array stay contiguous and ``j`` runs from 0,
    so LLVM sees plain unit-stride loops and vectorises them.
    """
    n_words = codes.shape[0]
    w = 0
    if n_words >= 4:
        least = _set4(codes, 0, lo, m, q, dist)
        w = 4
    else:
        for j in range(m):
            dist[j] = 0
    while w + 4 <= n_words:
        least = _add4(codes, w, lo, m, q, dist)
        w += 4
    if w + 2 <= n_words:
        least = _add2(codes, w, lo, m, q, dist)
        w += 2
    if w < n_words:
        least = _add1(codes, w, lo, m, q, dist)
    return least  # of the last pass, which leaves the final distances


@numba.njit(**JIT)
def _block_top1(codes, lo, m, q, gen, tick, dist, best, best_d):
    """Fold slots ``lo..lo+m`` into the running best ``(best, best_d)``."""
    if _block_distances(codes, lo, m, q, dist) > best_d:
        return best, best_d
    for j in range(m):
        d = dist[j]
        if d <= best_d:
            s = lo + j
            if gen[s] & 1 and _better(s, d, best, best_d, tick):
                best = s
                best_d = d
    return best, best_d


@numba.njit(**JIT)
def _scan_range(codes, lo, hi, q, gen, tick):
    dist = np.empty(BLOCK, np.int64)
    best = -1
    best_d = NO_DISTANCE
    for start in range(lo, hi, BLOCK):
        m = min(BLOCK, hi - start)
        best, best_d = _block_top1(codes, start, m, q, gen, tick, dist, best, best_d)
    return best, best_d


@numba.njit(**JIT)
def _scan_top1(codes, n, q, gen, tick):
    """Nearest live slot to ``q`` among the first ``n`` slots: ``(slot, distance)``.

    ``slot`` is -1 when no slot is live.
    """
    return _scan_range(codes, 0, n, q, gen, tick)


@numba.njit(**JIT_PARALLEL)
def _scan_top1_parallel(codes, n, q, gen, tick, n_chunks):
    """``_scan_top1`` split over ``n_chunks`` threads."""
    per = (n + n_chunks - 1) // n_chunks
    per = (per + BLOCK - 1) // BLOCK * BLOCK
    slots = np.full(n_chunks, -1, np.int64)
    dists = np.full(n_chunks, NO_DISTANCE, np.int64)
    for c in prange(n_chunks):
        lo = min(n, c * per)
        hi = min(n, lo + per)
        slots[c], dists[c] = _scan_range(codes, lo, hi, q, gen, tick)
    best = -1
    best_d = NO_DISTANCE
    for c in range(n_chunks):
        if slots[c] >= 0 and _better(slots[c], dists[c], best, best_d, tick):
            best = slots[c]
            best_d = dists[c]
    return best, best_d


@numba.njit(**JIT)
def _scan_batch_range(codes, n, queries, qlo, qhi, gen, tick, out_slot, out_dist):
    # Blocks outermost: each block of codes is loaded once and stays in cache
    # while every query of the range is compared with it.
    dist = np.empty(BLOCK, np.int64)
    for i in range(qlo, qhi):
        out_slot[i] = -1
        out_dist[i] = NO_DISTANCE
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        for i in range(qlo, qhi):
            out_slot[i], out_dist[i] = _block_top1(
                codes, start, m, queries[i], gen, tick, dist, out_slot[i], out_dist[i]
            )


@numba.njit(**JIT)
def _scan_batch(codes, n, queries, gen, tick, out_slot, out_dist):
    """Nearest live slot for each row of ``queries``, into ``out_slot``/``out_dist``."""
    _scan_batch_range(codes, n, queries, 0, queries.shape[0], gen, tick, out_slot, out_dist)


@numba.njit(**JIT_PARALLEL)
def _scan_batch_parallel(codes, n, queries, gen, tick, out_slot, out_dist, n_chunks):
    """``_scan_batch`` with the queries split over ``n_chunks`` threads."""
    nq = queries.shape[0]
    per = (nq + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        qlo = min(nq, c * per)
        qhi = min(nq, qlo + per)
        _scan_batch_range(codes, n, queries, qlo, qhi, gen, tick, out_slot, out_dist)


@numba.njit(**JIT)
def _topk_insert(s, d, tick, out_slot, out_dist, found):
    """Insert slot ``s`` at distance ``d`` into the sorted best list; returns its new length."""
    k = out_slot.shape[0]
    if found == k and not _better(s, d, out_slot[k - 1], out_dist[k - 1], tick):
        return found
    if found < k:
        found += 1
    i = found - 1
    while i > 0 and _better(s, d, out_slot[i - 1], out_dist[i - 1], tick):
        out_slot[i] = out_slot[i - 1]
        out_dist[i] = out_dist[i - 1]
        i -= 1
    out_slot[i] = s
    out_dist[i] = d
    return found


@numba.njit(**JIT)
def _kth_distance(cand_d, count, k, n_bits):
    """The k-th smallest of ``cand_d[:count]`` (distances run 0..n_bits), by counting."""
    hist = np.zeros(n_bits + 2, np.int64)
    for i in range(count):
        hist[cand_d[i]] += 1
    total = 0
    for d in range(n_bits + 1):
        total += hist[d]
        if total >= k:
            return d
    return n_bits


@numba.njit(**JIT)
def _topk_range(codes, lo, hi, q, gen, tick, out_slot, out_dist):
    # Live slots within the running bound are appended to a candidate buffer
    # (cheap), and the bound is tightened to the buffer's k-th distance only
    # when the buffer fills: far fewer sorted insertions than keeping a
    # sorted top-k throughout, which near-duplicate-heavy caches make costly.
    k = out_slot.shape[0]
    if k == 0:
        return 0
    n_bits = codes.shape[0] * 64
    dist = np.empty(BLOCK, np.int64)
    room = 4 * k + BLOCK
    cand_s = np.empty(room, np.int64)
    cand_d = np.empty(room, np.int64)
    count = 0
    bound = NO_DISTANCE
    for start in range(lo, hi, BLOCK):
        m = min(BLOCK, hi - start)
        if _block_distances(codes, start, m, q, dist) > bound:
            continue
        if count + m > room:
            bound = _kth_distance(cand_d, count, k, n_bits)
            kept = 0
            for i in range(count):
                if cand_d[i] <= bound:
                    cand_s[kept] = cand_s[i]
                    cand_d[kept] = cand_d[i]
                    kept += 1
            count = kept
            if count + m > room:  # more ties at the bound than room: grow
                room = 2 * (count + m)
                grown_s = np.empty(room, np.int64)
                grown_d = np.empty(room, np.int64)
                grown_s[:count] = cand_s[:count]
                grown_d[:count] = cand_d[:count]
                cand_s, cand_d = grown_s, grown_d
        # Look at 64 slots at a time: a run whose minimum is past the bound
        # is skipped after one vectorised pass, so only runs near the best
        # distances pay for the branchy appends.
        for run in range(0, m, 64):
            end = min(m, run + 64)
            least = NO_DISTANCE
            for j in range(run, end):
                least = min(least, dist[j])
            if least > bound:
                continue
            for j in range(run, end):
                d = dist[j]
                if d <= bound and gen[start + j] & 1:
                    cand_s[count] = start + j
                    cand_d[count] = d
                    count += 1
    found = 0
    for i in range(count):
        found = _topk_insert(cand_s[i], cand_d[i], tick, out_slot, out_dist, found)
    return found


@numba.njit(**JIT)
def _topk(codes, n, q, gen, tick, out_slot, out_dist):
    """The ``len(out_slot)`` nearest live slots, best first; returns how many."""
    return _topk_range(codes, 0, n, q, gen, tick, out_slot, out_dist)


@numba.njit(**JIT_PARALLEL)
def _topk_parallel(codes, n, q, gen, tick, out_slot, out_dist, n_chunks):
    """``_topk`` split over ``n_chunks`` threads, then merged."""
    k = out_slot.shape[0]
    per = (n + n_chunks - 1) // n_chunks
    per = (per + BLOCK - 1) // BLOCK * BLOCK
    slots = np.full((n_chunks, k), -1, np.int64)
    dists = np.full((n_chunks, k), NO_DISTANCE, np.int64)
    counts = np.zeros(n_chunks, np.int64)
    for c in prange(n_chunks):
        lo = min(n, c * per)
        hi = min(n, lo + per)
        counts[c] = _topk_range(codes, lo, hi, q, gen, tick, slots[c], dists[c])
    found = 0
    for c in range(n_chunks):
        for i in range(counts[c]):
            found = _topk_insert(slots[c, i], dists[c, i], tick, out_slot, out_dist, found)
    return found


# ---------------------------------------------------------------- rescoring


@numba.njit(**JIT)
def _cosine(vectors, vnorm, s, q):
    """Cosine of unit query ``q`` with slot ``s``'s stored row.

    Rows are unit float32, or int8 with their norms in ``vnorm``.
    """
    row = vectors[s]
    acc = 0.0
    for d in range(row.shape[0]):
        acc += q[d] * np.float64(row[d])
    return acc / vnorm[s] if vnorm.shape[0] > 0 else acc


@numba.njit(**JIT)
def _cosine_half(bits, table, s, q):
    """``_cosine`` for float16 rows kept as bit patterns; ``table`` maps bits to values."""
    row = bits[s]
    acc = 0.0
    for d in range(row.shape[0]):
        acc += q[d] * np.float64(table[row[d]])
    return acc


@numba.njit(**JIT)
def _rescore(vectors, vnorm, slots, q, out):
    """Cosines of ``q`` with the stored rows of ``slots``; -inf where a slot is -1."""
    for i in range(slots.shape[0]):
        out[i] = _cosine(vectors, vnorm, slots[i], q) if slots[i] >= 0 else -np.inf


@numba.njit(**JIT)
def _rescore_half(bits, table, slots, q, out):
    for i in range(slots.shape[0]):
        out[i] = _cosine_half(bits, table, slots[i], q) if slots[i] >= 0 else -np.inf


@numba.njit(**JIT)
def _pick_best(slots, cosines, tick):
    """The slot of highest cosine, ties to the higher tick: ``(slot, cosine)``, -1 if none."""
    best = -1
    best_c = -np.inf
    for i in range(slots.shape[0]):
        s = slots[i]
        c = cosines[i]
        if s >= 0 and (best < 0 or c > best_c or (c == best_c and tick[s] > tick[best])):
            best = s
            best_c = c
    return best, best_c


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
def _insert(codes, new, new_exp, prev, nxt, gen, tick, count, created, seen, exp, heap, hpos,
            state, now, out_id):
    """Store each row of ``new``; returns how many live entries were evicted.

    Row ``i`` gets the entry id ``out_id[i]`` (``gen << 32 | slot``) and
    expires at ``new_exp[i]``; an empty ``new_exp`` means no row expires.

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
        seen[s] = 0.0
        _push_front(prev, nxt, state, s)
        _stamp(prev, tick, state, s)
        state[SIZE] += 1
        if exp.shape[0] > 0:
            exp[s] = new_exp[i] if new_exp.shape[0] > 0 else np.inf
            if exp[s] < np.inf:
                _heap_push(heap, hpos, exp, state, s)
        out_id[i] = (np.uint64(gen[s]) << np.uint64(32)) | np.uint64(s)
    return evicted


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


# ---------------------------------------------------------------- benchmarks


@numba.njit(**JIT)
def _stream_xor(codes, n):
    """XOR of the first ``n`` columns: the cost of just reading the codes once."""
    acc = np.uint64(0)
    for w in range(codes.shape[0]):
        row = codes[w, :n]
        for j in range(n):
            acc ^= row[j]
    return acc


@numba.njit(**JIT_PARALLEL)
def _stream_xor_parallel(codes, n, n_chunks):
    """``_stream_xor`` split over ``n_chunks`` threads."""
    per = (n + n_chunks - 1) // n_chunks
    parts = np.zeros(n_chunks, np.uint64)
    for c in prange(n_chunks):
        lo = min(n, c * per)
        hi = min(n, lo + per)
        acc = np.uint64(0)
        for w in range(codes.shape[0]):
            row = codes[w, lo:hi]
            for j in range(hi - lo):
                acc ^= row[j]
        parts[c] = acc
    acc = np.uint64(0)
    for c in range(n_chunks):
        acc ^= parts[c]
    return acc
