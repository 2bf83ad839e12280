"""Plain-Python references for every kernel in binary_semantic_cache._kernels.

Written for clarity, not speed: no NumPy tricks, no blocks, no shared state.
"""

from collections import OrderedDict

import numpy as np


def popcount(x):
    return bin(int(x)).count("1")


def hamming(a, b):
    return sum(popcount(int(x) ^ int(y)) for x, y in zip(a, b))


def distances(codes, n, q):
    """``codes`` is column-wise: ``codes[w, slot]``."""
    return [hamming(codes[:, j], q) for j in range(n)]


KEYED = 1 << 30  # in apos, beside the place in the arena
TOMBSTONE = -1


def slot_of(value):
    """The slot an arena place names: itself, or ``-(slot + 2)`` for a key-only entry."""
    return value if value >= 0 else (-value - 2 if value < TOMBSTONE else None)


def in_segment(space, j):
    """Is slot ``j`` a scannable entry of ``space = (apos, members, lo, hi)``?"""
    if space is None:
        return True
    apos, members, lo, hi = space
    p = int(apos[j]) & (KEYED - 1)
    return lo <= p < hi and p < len(members) and int(members[p]) == j


def ranked(codes, n, q, gen, tick, space=None, slots=None):
    """Live slots (of ``slots``, or below ``n``) in ``space``, best first: lower distance,
    then higher tick."""
    pool = range(n) if slots is None else slots
    live = [j for j in pool if int(gen[j]) % 2 == 1 and in_segment(space, j)]
    return sorted(((hamming(codes[:, j], q), -int(tick[j]), j) for j in live))


def scan_top1(codes, n, q, gen, tick, space=None, slots=None):
    best = ranked(codes, n, q, gen, tick, space, slots)
    return (best[0][2], best[0][0]) if best else (-1, None)


def topk(codes, n, q, gen, tick, k, space=None, slots=None):
    return [(j, d) for d, _, j in ranked(codes, n, q, gen, tick, space, slots)[:k]]


def spaces_sound(gen, apos, members, nstart, nlen, ncap, kslot, kdisp, state):
    """Whether segments and key table agree with the slots (see ``_check_spaces``)."""
    hw, size, top = int(state[3]), int(state[4]), int(state[7])
    if not 0 <= top <= len(members) or top >= KEYED:
        return False
    live = [s for s in range(hw) if int(gen[s]) % 2 == 1]
    taken, placed = set(), []
    for x in range(len(nstart)):
        a, m, c = int(nstart[x]), int(nlen[x]), int(ncap[x])
        if m < 0 or c < m or (c > 0 and (a < 0 or a + c > top)):
            return False
        places = set(range(a, a + c))
        if places & taken:
            return False
        taken |= places
        for p in range(a, a + m):
            if int(members[p]) == TOMBSTONE:
                continue
            s = slot_of(int(members[p]))
            if s is None or s not in live or s in placed or int(apos[s]) & (KEYED - 1) != p:
                return False
            placed.append(s)
    if sorted(placed) != live or len(placed) != size:
        return False
    keyed = [s for s in live if int(apos[s]) & KEYED]
    if len(kslot) == 0:
        return not keyed
    if len(kdisp) != len(kslot) or len(keyed) >= len(kslot):
        return False
    bits = max(0, (len(kslot) - 1).bit_length())  # a slot's bits; the tag sits above them
    held = [int(s) & ((1 << bits) - 1) for s in kslot if s >= 0]
    if sorted(held) != sorted(keyed):
        return False
    size_t = len(kslot)
    for i in range(size_t):
        if kslot[i] < 0:
            if kdisp[i] != 0:
                return False
            continue
        # Robin Hood order: at most one more than the bucket before (-1 if empty).
        previous = -1 if kslot[i - 1] < 0 else int(kdisp[i - 1])
        if int(kdisp[i]) > min(255, previous + 1):
            return False
    return True


def pack_signs(values):
    """Bit i is set when values[i] > 0; word w holds bits 64w..64w+63, low bit first."""
    words = []
    for w in range(len(values) // 64):
        word = 0
        for i in range(64):
            if values[w * 64 + i] > 0:
                word |= 1 << i
        words.append(word)
    return words


def encode(x, planes):
    """Bit i is set when the projection on hyperplane i is positive."""
    x = np.asarray(x, np.float64)
    return pack_signs([float(np.dot(x, planes[:, i])) for i in range(planes.shape[1])])


class SlotModel:
    """The slot allocator and recency list, kept the obvious way.

    ``order`` is an OrderedDict from slot to None, least recent first.
    """

    def __init__(self, capacity):
        self.capacity = capacity
        self.order = OrderedDict()
        self.free = []  # stack: the last slot released is reused first
        self.high_water = 0
        self.gen = {}
        self.expiry = {}
        self.count = {}

    def insert(self, expires=float("inf")):
        evicted = None
        if self.free:
            s = self.free.pop()
        elif self.high_water < self.capacity:
            s = self.high_water
            self.high_water += 1
            self.gen[s] = 0
        else:
            s = next(iter(self.order))
            self.release(s)
            self.free.pop()
            evicted = s
        self.gen[s] += 1
        self.order[s] = None
        self.count[s] = 0
        if expires != float("inf"):
            self.expiry[s] = expires
        return s, evicted

    def touch(self, s):
        self.order.move_to_end(s)
        self.count[s] += 1

    def release(self, s):
        del self.order[s]
        self.gen[s] += 1
        self.free.append(s)
        self.expiry.pop(s, None)

    def purge(self, now):
        gone = sorted((t, s) for s, t in self.expiry.items() if t <= now)
        for _, s in gone:
            self.release(s)
        return [s for _, s in gone]

    def recency(self):
        """Live slots, most recent first."""
        return list(reversed(self.order))


def cosine(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def slots_sound(prev, nxt, gen, exp, heap, hpos, vnorm, state):
    """Whether a loaded index's links are what the kernels assume (see ``_check_slots``)."""
    head, tail, free, hw, size, heapn = (int(state[i]) for i in range(6))
    if not 0 <= hw <= len(prev):
        return False

    def chain(start):
        out, s = [], start
        while s >= 0:
            if s >= hw or s in out or len(out) > hw:
                return None
            out.append(s)
            s = int(nxt[s])
        return out if s == -1 else None

    live, free_slots = chain(head), chain(free)
    if live is None or free_slots is None or len(live) != size:
        return False
    if (live[-1] if live else -1) != tail or set(live) & set(free_slots):
        return False
    if any(int(gen[s]) % 2 != 1 for s in live) or any(int(gen[s]) % 2 != 0 for s in free_slots):
        return False
    if [int(prev[s]) for s in live] != [-1, *live][:len(live)]:
        return False
    if len(live) + len(free_slots) != hw:
        return False
    if len(vnorm) and not all(0 < float(vnorm[s]) < float("inf") for s in live):
        return False
    if len(exp) == 0:
        return heapn == 0
    if not 0 <= heapn <= size:
        return False
    members = [int(heap[i]) for i in range(heapn)]
    if any(s not in live for s in members) or len(set(members)) != heapn:
        return False
    if any(not float(exp[s]) < float("inf") for s in members):
        return False
    if any(float(exp[members[(i - 1) // 2]]) > float(exp[members[i]]) for i in range(1, heapn)):
        return False
    for s in range(hw):
        if s in members:
            if int(hpos[s]) != members.index(s):
                return False
        elif int(hpos[s]) != -1 or float(exp[s]) != float("inf"):
            return False
    return True
