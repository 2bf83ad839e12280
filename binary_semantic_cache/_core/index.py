"""The arrays behind one cache: their schema, how they grow, and every kernel call on them.

``Index`` is the one caller of the kernels in ``_kernels``: the cache asks it to
insert, touch, release, purge and scan, and never passes arrays itself.
"""

import numpy as np

from .. import _kernels as K

INITIAL_CAPACITY = 1024

#: Per-slot arrays, in file order, with their little-endian dtypes (the file
#: format's too): the one statement of the schema. Codes come first, word-major.
SLOT_ARRAYS = (("prev", "<i4"), ("nxt", "<i4"), ("gen", "<u4"), ("tick", "<u4"),
               ("count", "<u4"), ("created", "<f8"), ("seen", "<f4"), ("apos", "<i4"))
#: The per-slot arrays of format version 1, which had no namespaces.
SLOT_ARRAYS_V1 = SLOT_ARRAYS[:7]
#: Per namespace id: segment start, length (tombstones included) and room in ``members``.
NAMESPACE_ARRAYS = ("nstart", "nlen", "ncap")
#: Present from the first entry with a time to live: (name, dtype, value of a free slot).
EXPIRY_ARRAYS = (("exp", "<f8", np.inf), ("heap", "<i4", -1), ("hpos", "<i4", -1))
#: Stored copies of embeddings for rescoring: dtype, and whether a norm is kept.
#: float16 values are kept as their bit patterns (uint16): Numba has no float16.
RESCORE = {"int8": ("<i1", True), "float16": ("<u2", False), "float32": ("<f4", False)}

# float16 bit pattern -> float32 value, for the rescoring kernels (Numba has no float16).
_HALF = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)

# A namespace this much smaller than the slots in use is scanned through its
# segment (a gather costs several times a contiguous read per code); a larger
# one by the contiguous scan, skipping other namespaces' slots.
GATHER_RATIO = 8
_INITIAL_NAMESPACES = 16

_SLOT_BITS = 32
_SLOT_MASK = (1 << _SLOT_BITS) - 1


def native(dtype):
    """A file dtype in this machine's byte order, as the kernels need it."""
    return np.dtype(dtype).newbyteorder("=")


def entry_id(gen, slot):
    """The id of the entry in ``slot`` at generation ``gen``: ``gen << 32 | slot``."""
    return (int(gen) << _SLOT_BITS) | int(slot)


def entry_ids(gen, slots):
    """``entry_id`` for arrays of generations and slots, as a list of ints."""
    return ((gen.astype(np.uint64) << np.uint64(_SLOT_BITS)) | slots.astype(np.uint64)).tolist()


def split_id(value):
    """``(slot, gen)`` of an entry id."""
    return value & _SLOT_MASK, value >> _SLOT_BITS


def key_table_size(max_entries):
    """Buckets for the key table of a cache of ``max_entries``: at most 8/9 full."""
    return max_entries + max_entries // 8 + 8


def _segments(n_namespaces, arena):
    """Empty namespace segments: ``(members, nstart, nlen, ncap)``."""
    return (np.full(arena, K.TOMBSTONE, np.int32),) + tuple(
        np.zeros(n_namespaces, np.int32) for _ in NAMESPACE_ARRAYS)


class Index:
    """Codes and per-slot metadata of one cache (layout in ``_kernels.state``).

    Growing builds a new ``Index`` rather than resizing in place, so a reader
    that took a reference before the growth keeps a consistent snapshot.
    Expiry arrays stay empty until the first entry with a time to live;
    ``vectors`` (and ``vnorm`` for int8) are empty unless the cache rescores.
    ``mapped`` is True while the arrays are views of a loaded file's pages:
    the first insert then copies them into memory.

    ``seg`` holds the namespace segments as one tuple, ``(members, nstart,
    nlen, ncap)``, replaced whole when the arena is compacted, so a lock-free
    reader always sees one consistent set. ``kslot``/``kdisp`` stay empty
    until the first key, then hold a table sized for the cache's capacity.
    """

    __slots__ = ("codes", "state", "exp", "heap", "hpos", "vectors", "vnorm", "mapped", "seg",
                 "kslot", "kdisp") + tuple(name for name, _ in SLOT_ARRAYS)

    def __init__(self, n_words, capacity, rescore=None, dim=0):
        self.codes = np.zeros((n_words, capacity), np.uint64)
        for name, dtype in SLOT_ARRAYS:
            setattr(self, name, np.zeros(capacity, native(dtype)))
        for name, dtype, _ in EXPIRY_ARRAYS:
            setattr(self, name, np.zeros(0, native(dtype)))
        dtype, with_norm = RESCORE[rescore] if rescore else ("<f4", False)
        self.vectors = np.zeros((capacity if rescore else 0, dim if rescore else 0), native(dtype))
        self.vnorm = np.zeros(capacity if with_norm else 0, np.float32)
        self.state = np.zeros(K.STATE_LEN, np.int64)
        self.state[[K.HEAD, K.TAIL, K.FREE]] = -1
        self.mapped = False
        self.seg = _segments(_INITIAL_NAMESPACES, capacity)
        self.kslot = np.zeros(0, np.int32)
        self.kdisp = np.zeros(0, np.uint8)

    @classmethod
    def from_arrays(cls, arrays, state, *, mapped):
        """An Index over existing arrays (e.g. views of a loaded file), without copying."""
        index = cls.__new__(cls)
        index.codes = arrays["codes"]
        for name, _ in SLOT_ARRAYS:
            setattr(index, name, arrays[name])
        for name, dtype, _ in EXPIRY_ARRAYS:
            setattr(index, name, arrays.get(name, np.zeros(0, native(dtype))))
        index.vectors = arrays.get("vectors", np.zeros((0, 0), np.float32))
        index.vnorm = arrays.get("vnorm", np.zeros(0, np.float32))
        index.seg = (arrays["members"],) + tuple(arrays[name] for name in NAMESPACE_ARRAYS)
        index.kslot = arrays.get("kslot", np.zeros(0, np.int32))
        index.kdisp = arrays.get("kdisp", np.zeros(0, np.uint8))
        index.state = np.array(state, np.int64)
        index.mapped = mapped
        return index

    @classmethod
    def upgraded(cls, arrays, state, *, mapped):
        """An Index from the arrays of a version-1 file: every entry in the default namespace.

        The segment is the live slots in slot order: O(n) array work, in memory.
        """
        hw = int(state[K.HW])
        capacity = arrays["codes"].shape[1]
        live = np.flatnonzero(arrays["gen"][:hw] % 2 == 1).astype(np.int32)
        apos = np.zeros(capacity, np.int32)
        apos[live] = np.arange(len(live), dtype=np.int32)
        members, nstart, nlen, ncap = _segments(_INITIAL_NAMESPACES, max(capacity, 1))
        members[:len(live)] = live
        nlen[0] = ncap[0] = len(live)
        arrays = dict(arrays, apos=apos, members=members, nstart=nstart, nlen=nlen, ncap=ncap)
        state = np.array(state, np.int64)
        state[K.MTOP] = len(live)
        return cls.from_arrays(arrays, state, mapped=mapped)

    # ------------------------------------------------------------ sizes

    @property
    def capacity(self):
        return self.codes.shape[1]

    @property
    def high_water(self):
        """Slots ever used; every live slot is below it."""
        return int(self.state[K.HW])

    @property
    def size(self):
        return int(self.state[K.SIZE])

    @property
    def has_expiry(self):
        return self.exp.shape[0] > 0

    @property
    def has_keys(self):
        return self.kslot.shape[0] > 0

    @property
    def nbytes(self):
        """Bytes of every array: slots, namespace segments and key table (``state`` aside)."""
        names = ("codes", "vectors", "vnorm", "kslot", "kdisp") + tuple(
            n for n, _ in SLOT_ARRAYS) + tuple(n for n, _, _ in EXPIRY_ARRAYS)
        return sum(getattr(self, n).nbytes for n in names) + sum(a.nbytes for a in self.seg)

    def enable_expiry(self):
        """Allocate the expiry arrays (16 more bytes per slot)."""
        for name, dtype, fill in EXPIRY_ARRAYS:
            setattr(self, name, np.full(self.capacity, fill, native(dtype)))

    def enable_keys(self, buckets):
        """Allocate an empty key table of ``buckets`` (5 bytes each)."""
        self.kslot = np.full(buckets, -1, np.int32)
        self.kdisp = np.zeros(buckets, np.uint8)

    def grown(self, capacity):
        """A copy in memory with room for ``capacity`` slots."""
        new = Index.__new__(Index)
        used = self.high_water
        new.codes = np.zeros((self.codes.shape[0], capacity), np.uint64)
        new.codes[:, :used] = self.codes[:, :used]
        fills = {name: fill for name, _, fill in EXPIRY_ARRAYS}
        for name in [n for n, _ in SLOT_ARRAYS] + ["vnorm"] + list(fills):
            old = getattr(self, name)
            grown = np.full(capacity if old.shape[0] else 0, fills.get(name, 0), old.dtype)
            grown[:used] = old[:used]
            setattr(new, name, grown)
        old = self.vectors
        new.vectors = np.zeros((capacity if old.shape[0] else 0, old.shape[1]), old.dtype)
        new.vectors[:used] = old[:used]
        new.state = self.state.copy()
        new.mapped = False
        # Copies, not shared: a reader of the old index must never see slots past its arrays.
        new.seg = tuple(a.copy() for a in self.seg)
        new.kslot, new.kdisp = self.kslot.copy(), self.kdisp.copy()
        return new

    # ------------------------------------------------------------ namespaces

    @property
    def namespace_slots(self):
        """Length of the namespace table: ids below it may be used."""
        return self.seg[1].shape[0]

    def reserve_namespace(self, x):
        """Make room in the namespace table for id ``x``."""
        n = self.namespace_slots
        if x < n:
            return
        grown = max(x + 1, 2 * n)
        parts = []
        for old in self.seg[1:]:
            new = np.zeros(grown, np.int32)
            new[:n] = old
            parts.append(new)
        self.seg = (self.seg[0], *parts)

    def counts(self):
        """Live entries of each namespace id."""
        members, nstart, nlen, _ = self.seg
        out = np.zeros(nstart.shape[0], np.int64)
        K._ns_counts(members, nstart, nlen, out)
        return out

    def compact(self, last, extra):
        """Lay the segments out afresh, without tombstones, in a new arena with room for
        ``extra`` more entries. Namespace ``last`` (or -1) goes at the end, where it grows
        in place."""
        members, nstart, nlen, ncap = self.seg
        # Every segment gets an eighth more room than it holds (live/8 at most,
        # in all), and the free top an eighth of everything besides the rows to come.
        live = int(self.size)
        arena = live + (live >> 3) + extra + ((live + extra) >> 3) + 64
        if arena > K.POS_MASK:
            raise ValueError(f"the namespace arena would need {arena:,} places, more than "
                             f"{K.POS_MASK:,}; use a smaller max_entries")
        out = np.full(arena, K.TOMBSTONE, np.int32)
        parts = (np.zeros_like(nstart), np.zeros_like(nlen), np.zeros_like(ncap))
        self.state[K.MTOP] = K._ns_compact(members, nstart, nlen, self.apos, last, out, *parts)
        self.seg = (out, *parts)

    def namespace_slots_of(self, x):
        """Every live slot of namespace ``x``, key-only ones included."""
        members, nstart, nlen, _ = self.seg
        out = np.empty(int(nlen[x]), np.int64)
        return out[:K._ns_slots(members, int(nstart[x]), int(nlen[x]), out)]

    def in_namespace(self, slot, x):
        """Is ``slot`` a live entry (scannable or key-only) of namespace ``x``?"""
        members, nstart, nlen, _ = self.seg
        return bool(self.gen[slot] & 1) and K._in_namespace(self.apos, members, nstart, nlen,
                                                            slot, x)

    def scannable(self, slot, x):
        """Is ``slot`` a live, scannable entry of namespace ``x``? (Checks a scan's answer.)

        Plain Python, as ``_kernels.spaces._member``: it runs once per lookup,
        where a kernel call would cost more than the check.
        """
        members, nstart, nlen = self.seg[:3]
        at, lo = self.apos.item(slot) & K.POS_MASK, nstart.item(x)
        return (lo <= at < lo + nlen.item(x) and at < members.shape[0]
                and members.item(at) == slot and bool(self.gen.item(slot) & 1))

    # ------------------------------------------------------------ scans

    def _gathered(self, x):
        """``(members, lo, m)`` when namespace ``x`` is best read through its segment, else
        ``(members, lo, m, None)`` for the contiguous scan."""
        seg = self.seg
        members, nstart = seg[0], seg[1]
        if x >= nstart.shape[0]:
            return members, 0, 0
        lo = nstart.item(x)
        m = min(seg[2].item(x), members.shape[0] - lo)
        if m * GATHER_RATIO >= self.state.item(K.HW):
            return members, lo, lo + m, None
        return members, lo, m

    def nearest(self, code, threads, x=0):
        """``(slot, distance)`` of the nearest live slot of namespace ``x``; slot -1 when none."""
        seg = self._gathered(x)
        if len(seg) == 3:
            return K._gather_top1(self.codes, seg[0], seg[1], seg[2], code, self.tick)
        members, lo, hi, _ = seg
        n = self.state.item(K.HW)  # a Python int: cheaper for Numba to dispatch on
        if threads > 1:
            return K._scan_top1_parallel(self.codes, n, code, self.gen, self.tick, self.apos,
                                         members, lo, hi, threads)
        return K._scan_top1(self.codes, n, code, self.gen, self.tick, self.apos, members, lo, hi)

    def nearest_any(self, code, threads):
        """``nearest`` over every live slot: for a cache whose every entry is scannable and
        in one namespace."""
        n = self.state.item(K.HW)
        if threads > 1:
            return K._scan_top1_parallel_any(self.codes, n, code, self.gen, self.tick, threads)
        return K._scan_top1_any(self.codes, n, code, self.gen, self.tick)

    def top1(self, queries, threads, slots, dists, x=0):
        """Nearest live slot of namespace ``x`` to each code of ``queries`` (-1: none)."""
        n = self.high_water
        seg = self._gathered(x)
        if len(seg) == 3:
            K._gather_batch(self.codes, seg[0], seg[1], seg[2], queries, self.tick, slots, dists)
            return
        members, lo, hi, _ = seg
        if queries.shape[0] == 1:
            slots[0], dists[0] = self.nearest(queries[0], threads, x)
        elif threads > 1:
            K._scan_batch_parallel(self.codes, n, queries, self.gen, self.tick, self.apos,
                                   members, lo, hi, slots, dists, min(threads, queries.shape[0]))
        else:
            K._scan_batch(self.codes, n, queries, self.gen, self.tick, self.apos, members, lo,
                          hi, slots, dists)

    def topk(self, query, threads, slots, dists, x=0):
        """The ``len(slots)`` nearest live slots of namespace ``x``, best first; returns how
        many."""
        slots[:] = -1
        seg = self._gathered(x)
        if len(seg) == 3:
            return K._gather_topk(self.codes, seg[0], seg[1], seg[2], query, self.tick, slots,
                                  dists)
        members, lo, hi, _ = seg
        if threads > 1:
            return K._topk_parallel(self.codes, self.high_water, query, self.gen, self.tick,
                                    self.apos, members, lo, hi, slots, dists, threads)
        return K._topk(self.codes, self.high_water, query, self.gen, self.tick, self.apos,
                       members, lo, hi, slots, dists)

    def store_copies(self, slots, units):
        """Keep the rescoring copies of unit rows just stored in ``slots``."""
        if self.vnorm.shape[0]:  # int8, scaled to +-127, with the norm of what was kept
            peak = np.abs(units).max(axis=1, keepdims=True)
            q = np.rint(units * (127.0 / peak)).astype(np.int8)
            self.vectors[slots] = q
            self.vnorm[slots] = np.linalg.norm(q.astype(np.float32), axis=1)
        elif self.vectors.dtype == np.uint16:  # float16 bit patterns
            self.vectors[slots] = units.astype(np.float16).view(np.uint16)
        else:
            self.vectors[slots] = units

    def cosines(self, slots, unit):
        """Exact cosines of the unit query with the stored copies of ``slots`` (-inf for -1)."""
        out = np.empty(len(slots), np.float64)
        if self.vectors.dtype == np.uint16:
            K._rescore_half(self.vectors, _HALF, slots, unit, out)
        else:
            K._rescore(self.vectors, self.vnorm, slots, unit, out)
        return out

    def pick_best(self, slots, cosines):
        """The candidate of highest cosine, ties to the most recent: ``(slot, cosine)``."""
        return K._pick_best(slots, cosines, self.tick)

    # ------------------------------------------------------------ slot bookkeeping

    def insert(self, codes, expires, now, flags, homes, check_keys=False):
        """Store rows of ``codes``: ``(rows stored, slots, entry ids, evicted, victims)``.

        ``expires`` holds an expiry time per row, or is empty for rows that
        never expire; ``flags`` the namespace id and ``NEW_*`` flags of each
        row and ``homes`` its key's home bucket (read for keyed rows). The
        caller sizes the slot arrays first (``grown``); the arena is
        compacted here when a segment needs it. Rows stop early when a key's
        run is too long (``slots`` holds -2 at that row) or, with
        ``check_keys``, at the first whose key's home already holds an entry
        of its namespace (``slots`` holds that slot there). ``victims`` holds,
        per row stored, the slot of a keyed entry it evicted, else -1.
        """
        m = codes.shape[0]
        slots, gens, victims = (np.empty(m, np.int64), np.empty(m, np.uint32),
                                np.empty(m, np.int64))
        done, evicted = self._insert(codes, expires, flags, homes, now, check_keys, slots, gens,
                                     victims)
        while done < m and slots[done] == -1:
            self.compact(int(flags[done]) & K.ID_MASK, m - done)
            more, ev = self._insert(codes[done:], expires[done:] if expires.shape[0] else expires,
                                    flags[done:], homes[done:], now, check_keys, slots[done:],
                                    gens[done:], victims[done:])
            done += more
            evicted += ev
        if done == 1:  # a single put: plain ints beat array arithmetic
            ids = [entry_id(gens.item(0), slots.item(0))]
        else:
            ids = entry_ids(gens[:done], slots[:done])
        return done, slots, ids, evicted, victims[:done]

    def _insert(self, codes, expires, flags, homes, now, check_keys, slots, gens, victims):
        members, nstart, nlen, ncap = self.seg
        return K._insert(self.codes, codes, expires, flags, homes, self.prev, self.nxt, self.gen,
                         self.tick, self.count, self.created, self.seen, self.exp, self.heap,
                         self.hpos, self.apos, members, nstart, nlen, ncap, self.kslot,
                         self.kdisp, self.state, now, check_keys, slots, gens, victims)

    def replace(self, slot, code, key_only, expires, now):
        """New code (or none, ``key_only``) and expiry for the keyed entry in ``slot``."""
        K._replace(self.codes, code, key_only, expires, self.prev, self.nxt, self.tick,
                   self.count, self.created, self.seen, self.exp, self.heap, self.hpos,
                   self.apos, self.seg[0], self.state, now, slot)

    def find_key(self, home, x, start=-1):
        """``(slot, bucket)`` of the next entry of namespace ``x`` whose key has ``home``."""
        if not self.has_keys:
            return -1, -1
        members, nstart, nlen, _ = self.seg
        return K._key_find(self.kslot, self.kdisp, self.apos, members, nstart, nlen, home, x,
                           start)

    def remove_keys(self, homes, slots):
        """Take the keys of ``slots`` (under ``homes``) out of the table; returns how many
        were not there."""
        return K._key_remove_all(self.kslot, self.kdisp, np.asarray(homes, np.int64),
                                 np.asarray(slots, np.int64))

    def fill_keys(self, homes, slots):
        """Refill an emptied table; False when a run grew too long (another salt is needed)."""
        self.kslot[:] = -1
        self.kdisp[:] = 0
        return K._key_fill(self.kslot, self.kdisp, np.asarray(homes, np.int64),
                           np.asarray(slots, np.int64))

    def touch(self, slot, now):
        """Record a hit: most recent, counted, last use ``now``."""
        K._touch(self.prev, self.nxt, self.tick, self.count, self.created, self.seen, self.state,
                 slot, now)

    def release(self, slot):
        K._release(self.prev, self.nxt, self.gen, self.exp, self.heap, self.hpos, self.apos,
                   self.seg[0], self.state, slot)

    def release_all(self, slots):
        K._release_all(self.prev, self.nxt, self.gen, self.exp, self.heap, self.hpos, self.apos,
                       self.seg[0], self.state, slots)

    def expiry_due(self, now):
        return self.has_expiry and self.state[K.HEAPN] > 0 and self.exp[self.heap[0]] <= now

    def purge(self, now):
        """Release every entry expired at ``now``: ``(slots, which of them had a key)``."""
        n = int(self.state[K.HEAPN])
        out, keyed = np.empty(n, np.int64), np.empty(n, np.bool_)
        m = K._purge_expired(self.prev, self.nxt, self.gen, self.exp, self.heap, self.hpos,
                             self.apos, self.seg[0], self.state, now, out, keyed)
        return out[:m].tolist(), keyed[:m].tolist()

    def check(self):
        """``(0, -1)`` when every link is sound, else ``(problem, slot)`` (``_kernels``)."""
        problem = K._check_slots(self.prev, self.nxt, self.gen, self.exp, self.heap, self.hpos,
                                 self.vnorm, self.state)
        if problem[0]:
            return problem
        return K._check_spaces(self.gen, self.apos, *self.seg, self.kslot, self.kdisp,
                               self.state)
