"""Namespaces and exact keys: the segment arena and the key table, and their check."""

import numba
import numpy as np

from .._core.jit import JIT
from .state import HW, KEYED, MAX_DISPLACEMENT, MTOP, POS_MASK, SIZE, TOMBSTONE

# ---------------------------------------------------------------- namespace segments


@numba.njit(**JIT)
def _slot_of(value):
    """The slot a place in the arena names (either kind of entry), or -1 for a tombstone."""
    return value if value >= 0 else (-value - 2 if value < TOMBSTONE else -1)


@numba.njit(**JIT)
def _member(apos, members, lo, hi, s):
    """Is slot ``s`` a scannable entry of the segment ``members[lo:hi]``? (Any live slot
    is, with ``lo`` below 0.)"""
    if lo < 0:
        return True
    p = apos[s] & POS_MASK
    return lo <= p < hi and p < members.shape[0] and members[p] == s


@numba.njit(**JIT)
def _in_namespace(apos, members, nstart, nlen, s, x):
    """Is slot ``s`` an entry (scannable or key-only) of namespace ``x``?"""
    p = apos[s] & POS_MASK
    if not nstart[x] <= p < nstart[x] + nlen[x] or p >= members.shape[0]:
        return False
    v = members[p]
    return v == s or v == -s - 2


@numba.njit(**JIT)
def _copy_live(members, start, n, out, top, apos):
    """Copy the places ``members[start:start+n]`` to ``out[top:]`` without their tombstones,
    pointing each moved slot's ``apos`` at its new place; returns how many were copied."""
    m = 0
    for i in range(n):
        v = members[start + i]
        t = _slot_of(v)
        if t >= 0:
            out[top + m] = v
            apos[t] = (apos[t] & KEYED) | (top + m)
            m += 1
    return m


@numba.njit(**JIT)
def _grown_cap(cap):
    return cap + (cap >> 1) + 2


@numba.njit(**JIT)
def _ns_room(members, nstart, nlen, ncap, state, x):
    """Can namespace ``x`` take one more entry without compacting the arena?"""
    if nlen[x] < ncap[x]:
        return True
    top = state[MTOP]
    if nstart[x] + ncap[x] == top and top < members.shape[0]:
        return True
    return top + _grown_cap(ncap[x]) <= members.shape[0]


@numba.njit(**JIT)
def _ns_add(members, nstart, nlen, ncap, apos, state, x, value, s):
    """Append ``value`` (slot ``s``, scannable or key-only) to namespace ``x``'s segment.

    ``_ns_room`` must hold.
    """
    if nlen[x] == ncap[x]:
        top = state[MTOP]
        want = _grown_cap(ncap[x])
        if nstart[x] + ncap[x] == top and top < members.shape[0]:
            # The last segment grows in place into the free top.
            grow = min(want - ncap[x], members.shape[0] - top)
            ncap[x] += grow
            state[MTOP] = top + grow
        else:
            # Copied without its tombstones, never moved: a lock-free reader
            # may still scan the old place.
            nlen[x] = _copy_live(members, nstart[x], nlen[x], members, top, apos)
            nstart[x] = top
            ncap[x] = want
            state[MTOP] = top + want
    p = nstart[x] + nlen[x]
    members[p] = value
    apos[s] = (apos[s] & KEYED) | p
    nlen[x] += 1


@numba.njit(**JIT)
def _ns_compact(members, nstart, nlen, apos, last, out, out_start, out_len, out_cap):
    """Lay every segment out afresh in ``out``, without tombstones; returns the new top.

    Each namespace gets an eighth more room than it holds; namespace ``last``
    is laid out at the end, so it can grow in place into what is left.
    """
    top = 0
    n = nstart.shape[0]
    for k in range(n + 1):
        x = k if k < n else last
        if k == last or (k == n and last < 0):
            continue
        out_start[x] = top
        m = _copy_live(members, nstart[x], nlen[x], out, top, apos)
        out_len[x] = m
        out_cap[x] = m + (m >> 3)
        top += out_cap[x]
    return top


@numba.njit(**JIT)
def _ns_counts(members, nstart, nlen, out):
    """Live entries of each namespace (tombstones left out) into ``out``."""
    for x in range(nstart.shape[0]):
        c = 0
        for i in range(nstart[x], nstart[x] + nlen[x]):
            if members[i] != TOMBSTONE:
                c += 1
        out[x] = c


@numba.njit(**JIT)
def _ns_slots(members, lo, m, out):
    """The slots of the segment ``members[lo:lo+m]`` into ``out``; returns how many."""
    k = 0
    for i in range(lo, lo + m):
        t = _slot_of(members[i])
        if t >= 0:
            out[k] = t
            k += 1
    return k


# ---------------------------------------------------------------- key table
#
# A key reaches the kernels as ``hk``: its home bucket in the low 32 bits, 31
# more bits of its hash above. A bucket holds ``tag << b | slot``, where ``b``
# is the bits a slot needs in a table of this size and the tag is as many of
# those other hash bits as fit in the rest of an int32: keys that share a home
# are told apart before the owner has to compare them.


@numba.njit(**JIT)
def _slot_bits(size):
    """Bits a slot needs in a table of ``size`` buckets (a table has more buckets than slots)."""
    b = 0
    while (1 << b) < size:
        b += 1
    return b


@numba.njit(**JIT)
def _tag(hk, bits):
    """The tag of key hash ``hk`` beside a slot of ``bits`` bits."""
    if bits >= 31:
        return 0
    return (hk >> 32) & ((1 << (31 - bits)) - 1)


@numba.njit(**JIT)
def _key_find(kslot, kdisp, apos, members, nstart, nlen, hk, x, start):
    """Next slot of namespace ``x`` whose key matches hash ``hk``, from bucket ``start``.

    Returns ``(slot, bucket)``, slot -1 when there is none (``start`` -1: from
    the home). Keys whose home and tag agree are told apart by the caller,
    which compares them and, on a mismatch, probes on from ``bucket + 1``.
    """
    size = kslot.shape[0]
    bits = _slot_bits(size)
    home = hk & 0xFFFFFFFF
    tag = _tag(hk, bits)
    i = home if start < 0 else start % size
    for _ in range(size):
        v = kslot[i]
        dist = (i - home) % size
        # Robin Hood order: entries of one home sit together, after every entry
        # of an earlier home, so a shorter displacement means this home is done.
        if v < 0 or kdisp[i] < dist:
            return -1, -1
        if kdisp[i] == dist and v >> bits == tag:
            s = v & ((1 << bits) - 1)
            if _in_namespace(apos, members, nstart, nlen, s, x):
                return s, i
        i += 1
        if i == size:
            i = 0
    return -1, -1


@numba.njit(**JIT)
def _key_fits(kslot, kdisp, hk):
    """Would ``_key_add`` of hash ``hk`` keep every displacement within bounds?"""
    size = kslot.shape[0]
    i = hk & 0xFFFFFFFF
    d = 0
    for _ in range(size):
        if kslot[i] < 0:
            return True
        if kdisp[i] < d:
            d = kdisp[i]  # the entry it displaces is carried on instead
        d += 1
        if d > MAX_DISPLACEMENT:
            return False
        i += 1
        if i == size:
            i = 0
    return False


@numba.njit(**JIT)
def _key_add(kslot, kdisp, hk, s):
    """Put slot ``s`` under hash ``hk`` (Robin Hood: it takes the bucket of any entry nearer
    its own home, which moves on); False, changing nothing, past ``MAX_DISPLACEMENT``."""
    if not _key_fits(kslot, kdisp, hk):
        return False
    size = kslot.shape[0]
    bits = _slot_bits(size)
    v = (_tag(hk, bits) << bits) | s
    i = hk & 0xFFFFFFFF
    d = 0
    while kslot[i] >= 0:
        if kdisp[i] < d:
            v, kslot[i] = kslot[i], v
            d, kdisp[i] = np.int64(kdisp[i]), d
        d += 1
        i += 1
        if i == size:
            i = 0
    kslot[i] = v
    kdisp[i] = d
    return True


@numba.njit(**JIT)
def _key_remove(kslot, kdisp, hk, s):
    """Delete slot ``s``'s bucket under hash ``hk``, shifting the rest of its run back.

    Returns False when no bucket of that hash holds ``s``.
    """
    size = kslot.shape[0]
    bits = _slot_bits(size)
    home = hk & 0xFFFFFFFF
    v = (_tag(hk, bits) << bits) | s
    i = home
    for _ in range(size):
        dist = (i - home) % size
        if kslot[i] < 0 or kdisp[i] < dist:
            return False
        if kslot[i] == v and kdisp[i] == dist:
            break
        i += 1
        if i == size:
            i = 0
    j = i
    while True:
        j += 1
        if j == size:
            j = 0
        if kslot[j] < 0 or kdisp[j] == 0:
            break  # the run ends, or the next entry already sits at its home
        kslot[i] = kslot[j]
        kdisp[i] = kdisp[j] - 1
        i = j
    kslot[i] = -1
    kdisp[i] = 0
    return True


@numba.njit(**JIT)
def _key_remove_all(kslot, kdisp, homes, slots):
    """``_key_remove`` each pair of hash and slot; returns how many were not found."""
    missing = 0
    for k in range(slots.shape[0]):
        if not _key_remove(kslot, kdisp, homes[k], slots[k]):
            missing += 1
    return missing


@numba.njit(**JIT)
def _key_fill(kslot, kdisp, homes, slots):
    """Put each slot under its hash in an empty table; returns False on an overlong run."""
    for k in range(slots.shape[0]):
        if not _key_add(kslot, kdisp, homes[k], slots[k]):
            return False
    return True


# ---------------------------------------------------------------- loading

BAD_NAMESPACE, BAD_KEYS = 5, 6


@numba.njit(**JIT)
def _check_spaces(gen, apos, members, nstart, nlen, ncap, kslot, kdisp, state):
    """``(0, -1)`` when segments and key table agree with the slots, else ``(problem, slot)``.

    Sound means: segments lie inside the arena below its top and do not
    overlap; each place holds a tombstone or a live slot whose ``apos``
    points back, and every live slot has such a place; ``KEYED`` slots are
    exactly those in the key table, each once, in Robin Hood order (which
    makes each reachable from its home), with an empty bucket left. Whether a
    home is the right one for its key needs the keys, so a damaged table
    loaded with ``verify=False`` can cost exact hits, never give a wrong one:
    the owner compares every key it returns.
    """
    hw = state[HW]
    top = state[MTOP]
    if not 0 <= top <= members.shape[0] or top > POS_MASK:
        return BAD_NAMESPACE, -1
    taken = np.zeros(top, np.bool_)
    placed = np.zeros(hw, np.bool_)
    total = 0
    for x in range(nstart.shape[0]):
        a, m, c = nstart[x], nlen[x], ncap[x]
        if m < 0 or c < m or (c > 0 and (a < 0 or a + c > top)):
            return BAD_NAMESPACE, -1
        for p in range(a, a + c):
            if taken[p]:
                return BAD_NAMESPACE, -1
            taken[p] = True
        for p in range(a, a + m):
            v = members[p]
            if v == TOMBSTONE:
                continue
            s = _slot_of(v)
            if s < 0 or s >= hw or placed[s] or gen[s] & 1 == 0 or apos[s] & POS_MASK != p:
                return BAD_NAMESPACE, s
            placed[s] = True
            total += 1
    keyed = 0
    for s in range(hw):
        if gen[s] & 1 == 0:
            continue
        if not placed[s]:
            return BAD_NAMESPACE, s
        if apos[s] & KEYED:
            keyed += 1
    if total != state[SIZE]:
        return BAD_NAMESPACE, -1
    size = kslot.shape[0]
    if size == 0:
        return (BAD_KEYS, -1) if keyed else (0, -1)
    if kdisp.shape[0] != size or keyed >= size:
        return BAD_KEYS, -1
    empty = -1
    for i in range(size):
        if kslot[i] < 0:
            empty = i
            break
    if empty < 0:
        return BAD_KEYS, -1
    # One walk from an empty bucket, checking the Robin Hood order every probe
    # relies on: a run starts at its home (displacement 0) and each next entry
    # is displaced at most one more than the one before it.
    found = np.zeros(hw, np.bool_)
    n_found = 0
    mask = (1 << _slot_bits(size)) - 1
    before = -1  # displacement of the previous bucket, -1 when it is empty
    for step in range(1, size + 1):
        i = (empty + step) % size
        s = kslot[i] & mask if kslot[i] >= 0 else -1
        if s < 0:
            if kdisp[i] != 0:
                return BAD_KEYS, -1
            before = -1
            continue
        if s >= hw or found[s] or gen[s] & 1 == 0 or not apos[s] & KEYED:
            return BAD_KEYS, s
        if kdisp[i] > before + 1 or kdisp[i] > MAX_DISPLACEMENT:
            return BAD_KEYS, s
        before = kdisp[i]
        found[s] = True
        n_found += 1
    if n_found != keyed:
        return BAD_KEYS, -1
    return 0, -1
