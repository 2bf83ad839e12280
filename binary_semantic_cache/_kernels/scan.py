"""Hamming scans: top-1 (single, parallel, batched) and top-k, over column-wise codes.

Two ways through a namespace: the contiguous scans walk every slot below high
water and keep the scannable entries of the namespace's segment
``members[lo_ns:hi_ns]`` (checked only for slots close enough to matter), for
a namespace that holds most of the cache; the gather scans read the segment
itself, for one that holds a small part of it.
"""

import numba
import numpy as np
from numba import prange

from .._core.jit import BLOCK, DISABLE_JIT, JIT, JIT_PARALLEL
from .spaces import _member

NO_DISTANCE = np.int64(1 << 40)

if DISABLE_JIT:

    def _popcount(x):
        return int(x).bit_count()

else:  # pragma: no cover  (coverage is measured with NUMBA_DISABLE_JIT=1)

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
def _min4(codes, lo, m, q):
    """Least distance from ``q`` to slots ``lo..lo+m`` of 4-word codes, nothing stored."""
    r0, r1 = codes[0, lo : lo + m], codes[1, lo : lo + m]
    r2, r3 = codes[2, lo : lo + m], codes[3, lo : lo + m]
    q0, q1, q2, q3 = q[0], q[1], q[2], q[3]
    least = NO_DISTANCE
    for j in range(m):
        d = (_popcount(r0[j] ^ q0) + _popcount(r1[j] ^ q1)
             + _popcount(r2[j] ^ q2) + _popcount(r3[j] ^ q3))
        least = min(least, d)
    return least


@numba.njit(**JIT)
def _block_top1(codes, lo, m, q, gen, tick, apos, members, lo_ns, hi_ns, dist, best, best_d):
    """Fold slots ``lo..lo+m`` into the running best ``(best, best_d)``."""
    # Most blocks cannot beat the running best. For 256-bit codes a pass that
    # only takes the minimum tells so without storing a distance per slot;
    # the rare block that can is measured again, in full.
    if codes.shape[0] == 4 and _min4(codes, lo, m, q) > best_d:
        return best, best_d
    if _block_distances(codes, lo, m, q, dist) > best_d:
        return best, best_d
    for j in range(m):
        d = dist[j]
        if d <= best_d:
            s = lo + j
            # The namespace check last: it reads two more arrays, and most
            # candidates of a block (all of the first one) lose on distance.
            if gen[s] & 1 and _better(s, d, best, best_d, tick) and _member(
                    apos, members, lo_ns, hi_ns, s):
                best = s
                best_d = d
    return best, best_d


@numba.njit(**JIT)
def _scan_range(codes, lo, hi, q, gen, tick, apos, members, lo_ns, hi_ns):
    dist = np.empty(BLOCK, np.int64)
    best = -1
    best_d = NO_DISTANCE
    for start in range(lo, hi, BLOCK):
        m = min(BLOCK, hi - start)
        best, best_d = _block_top1(codes, start, m, q, gen, tick, apos, members, lo_ns, hi_ns,
                                   dist, best, best_d)
    return best, best_d


# A cache with one namespace and no key-only entry needs no namespace check: its
# scans pass a bound below 0 and these stand-ins, and so launch with fewer arrays.
_ANY = np.zeros(1, np.int32)


@numba.njit(**JIT)
def _scan_top1_any(codes, n, q, gen, tick):
    """``_scan_top1`` over every live slot, whatever its namespace (the cache's only one)."""
    return _scan_range(codes, 0, n, q, gen, tick, _ANY, _ANY, -1, -1)


@numba.njit(**JIT)
def _scan_top1_parallel_any(codes, n, q, gen, tick, n_chunks):
    """``_scan_top1_any`` split over ``n_chunks`` threads."""
    return _merge_chunks(*_chunk_bests(codes, n, q, gen, tick, _ANY, _ANY, -1, -1, n_chunks),
                         tick)


@numba.njit(**JIT)
def _scan_top1(codes, n, q, gen, tick, apos, members, lo_ns, hi_ns):
    """Nearest live slot to ``q`` among the first ``n`` slots: ``(slot, distance)``.

    ``slot`` is -1 when no slot of namespace ``want`` is live.
    """
    return _scan_range(codes, 0, n, q, gen, tick, apos, members, lo_ns, hi_ns)


@numba.njit(**JIT_PARALLEL)
def _chunk_bests(codes, n, q, gen, tick, apos, members, lo_ns, hi_ns, n_chunks):
    """The best ``(slot, distance)`` of each of ``n_chunks`` ranges, one thread each."""
    per = (n + n_chunks - 1) // n_chunks
    per = (per + BLOCK - 1) // BLOCK * BLOCK
    slots = np.full(n_chunks, -1, np.int64)
    dists = np.full(n_chunks, NO_DISTANCE, np.int64)
    for c in prange(n_chunks):
        lo = min(n, c * per)
        hi = min(n, lo + per)
        slots[c], dists[c] = _scan_range(codes, lo, hi, q, gen, tick, apos, members, lo_ns,
                                         hi_ns)
    return slots, dists


@numba.njit(**JIT)
def _merge_chunks(slots, dists, tick):
    best = -1
    best_d = NO_DISTANCE
    for c in range(slots.shape[0]):
        if slots[c] >= 0 and _better(slots[c], dists[c], best, best_d, tick):
            best = slots[c]
            best_d = dists[c]
    return best, best_d


@numba.njit(**JIT)
def _scan_top1_parallel(codes, n, q, gen, tick, apos, members, lo_ns, hi_ns, n_chunks):
    """``_scan_top1`` split over ``n_chunks`` threads."""
    return _merge_chunks(*_chunk_bests(codes, n, q, gen, tick, apos, members, lo_ns, hi_ns,
                                       n_chunks), tick)


@numba.njit(**JIT)
def _scan_batch_range(codes, n, queries, qlo, qhi, gen, tick, apos, members, lo_ns, hi_ns,
                      out_slot, out_dist):
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
                codes, start, m, queries[i], gen, tick, apos, members, lo_ns, hi_ns, dist,
                out_slot[i], out_dist[i]
            )


@numba.njit(**JIT)
def _scan_batch(codes, n, queries, gen, tick, apos, members, lo_ns, hi_ns, out_slot, out_dist):
    """Nearest live slot for each row of ``queries``, into ``out_slot``/``out_dist``."""
    _scan_batch_range(codes, n, queries, 0, queries.shape[0], gen, tick, apos, members, lo_ns,
                      hi_ns, out_slot, out_dist)


@numba.njit(**JIT_PARALLEL)
def _scan_batch_parallel(codes, n, queries, gen, tick, apos, members, lo_ns, hi_ns, out_slot,
                         out_dist, n_chunks):
    """``_scan_batch`` with the queries split over ``n_chunks`` threads."""
    nq = queries.shape[0]
    per = (nq + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        qlo = min(nq, c * per)
        qhi = min(nq, qlo + per)
        _scan_batch_range(codes, n, queries, qlo, qhi, gen, tick, apos, members, lo_ns, hi_ns,
                          out_slot, out_dist)


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
def _topk_range(codes, lo, hi, q, gen, tick, apos, members, lo_ns, hi_ns, out_slot, out_dist):
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
                if d <= bound and gen[start + j] & 1 and _member(apos, members, lo_ns, hi_ns,
                                                                start + j):
                    cand_s[count] = start + j
                    cand_d[count] = d
                    count += 1
    found = 0
    for i in range(count):
        found = _topk_insert(cand_s[i], cand_d[i], tick, out_slot, out_dist, found)
    return found


@numba.njit(**JIT)
def _topk(codes, n, q, gen, tick, apos, members, lo_ns, hi_ns, out_slot, out_dist):
    """The ``len(out_slot)`` nearest live slots, best first; returns how many."""
    return _topk_range(codes, 0, n, q, gen, tick, apos, members, lo_ns, hi_ns, out_slot, out_dist)


@numba.njit(**JIT_PARALLEL)
def _topk_parallel(codes, n, q, gen, tick, apos, members, lo_ns, hi_ns, out_slot, out_dist,
                   n_chunks):
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
        counts[c] = _topk_range(codes, lo, hi, q, gen, tick, apos, members, lo_ns, hi_ns,
                                slots[c], dists[c])
    found = 0
    for c in range(n_chunks):
        for i in range(counts[c]):
            found = _topk_insert(slots[c, i], dists[c, i], tick, out_slot, out_dist, found)
    return found


# ---------------------------------------------------------------- one namespace's segment


@numba.njit(**JIT)
def _gather_distance(codes, s, q):
    d = 0
    for w in range(codes.shape[0]):
        d += _popcount(codes[w, s] ^ q[w])
    return d


@numba.njit(**JIT)
def _gather_top1(codes, members, lo, m, q, tick):
    """Nearest of the slots ``members[lo:lo+m]`` to ``q``: ``(slot, distance)``, -1 if none."""
    best = -1
    best_d = NO_DISTANCE
    for i in range(lo, lo + m):
        s = members[i]
        if s < 0:  # a tombstone, or a key-only entry
            continue
        d = _gather_distance(codes, s, q)
        if d <= best_d and _better(s, d, best, best_d, tick):
            best = s
            best_d = d
    return best, best_d


@numba.njit(**JIT)
def _gather_batch(codes, members, lo, m, queries, tick, out_slot, out_dist):
    """``_gather_top1`` for each row of ``queries``."""
    for i in range(queries.shape[0]):
        out_slot[i], out_dist[i] = _gather_top1(codes, members, lo, m, queries[i], tick)


@numba.njit(**JIT)
def _gather_topk(codes, members, lo, m, q, tick, out_slot, out_dist):
    """The ``len(out_slot)`` nearest of ``members[lo:lo+m]``, best first; returns how many."""
    found = 0
    for i in range(lo, lo + m):
        s = members[i]
        if s >= 0:
            found = _topk_insert(s, _gather_distance(codes, s, q), tick, out_slot, out_dist,
                                 found)
    return found
