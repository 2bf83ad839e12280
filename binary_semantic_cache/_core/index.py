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
               ("count", "<u4"), ("created", "<f8"), ("seen", "<f4"), ("ns", "<i4"),
               ("npos", "<i4"))
#: The per-slot arrays of format version 1, which had no namespaces.
SLOT_ARRAYS_V1 = SLOT_ARRAYS[:7]
#: Per namespace id: segment start, length and room in ``members``, key-only entries.
NAMESPACE_ARRAYS = ("nstart", "nlen", "ncap", "nkey")
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


def key_table_size(capacity):
    """Buckets for a key table over ``capacity`` slots: at most 80% full."""
    return capacity + capacity // 4 + 8


def _segments(n_namespaces, arena):
    """Empty namespace segments: ``(members, nstart, nlen, ncap, nkey)``."""
    return (np.zeros(arena, np.int32),) + tuple(
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
    nlen, ncap, nkey)``, replaced whole when the arena is compacted, so a
    lock-free reader always sees one consistent set. ``khash``/``ktable``
    stay empty until the first key.
    """

    __slots__ = ("codes", "state", "exp", "heap", "hpos", "vectors", "vnorm", "mapped", "seg",
                 "khash", "ktable") + tuple(name for name, _ in SLOT_ARRAYS)

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
        self.khash = np.zeros(0, np.uint32)
        self.ktable = np.zeros(0, np.int32)

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
        index.khash = arrays.get("khash", np.zeros(0, np.uint32))
        index.ktable = arrays.get("ktable", np.zeros(0, np.int32))
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
        arrays = dict(arrays, ns=np.zeros(capacity, np.int32),
                      npos=np.full(capacity, -1, np.int32))
        arrays["npos"][live] = np.arange(len(live), dtype=np.int32)
        members, nstart, nlen, ncap, nkey = _segments(_INITIAL_NAMESPACES, max(capacity, 1))
        members[:len(live)] = live
        nlen[0] = ncap[0] = len(live)
        arrays.update(members=members, nstart=nstart, nlen=nlen, ncap=ncap, nkey=nkey)
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
        return self.ktable.shape[0] > 0

    @property
    def nbytes(self):
        """Bytes of every array: slots, namespace segments and key table (``state`` aside)."""
        names = ("codes", "vectors", "vnorm", "khash", "ktable") + tuple(
            n for n, _ in SLOT_ARRAYS) + tuple(n for n, _, _ in EXPIRY_ARRAYS)
        return sum(getattr(self, n).nbytes for n in names) + sum(a.nbytes for a in self.seg)

    def enable_expiry(self):
        """Allocate the expiry arrays (16 more bytes per slot)."""
        for name, dtype, fill in EXPIRY_ARRAYS:
            setattr(self, name, np.full(self.capacity, fill, native(dtype)))

    def enable_keys(self):
        """Allocate the key table (about 9 more bytes per slot)."""
        self.khash = np.zeros(self.capacity, np.uint32)
        self.ktable = np.full(key_table_size(self.capacity), -1, np.int32)

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
        members = self.seg[0]
        parts = []
        for old in self.seg[1:]:
            new = np.zeros(grown, np.int32)
            new[:n] = old
            parts.append(new)
        self.seg = (members, *parts)

    def counts(self):
        """Live entries of each namespace id (segment plus key-only)."""
        _, _, nlen, _, nkey = self.seg
        return nlen.astype(np.int64) + nkey

    def compact(self, last, extra):
        """Lay the segments out afresh in a new arena with room for ``extra`` more slots.

        Namespace ``last`` (or -1) goes at the end, where it grows in place.
        """
        members, nstart, nlen, ncap, nkey = self.seg
        room = nlen.astype(np.int64) + (nlen >> 3)
        total = int(room.sum())
        arena = total + (total >> 3) + 2 * extra + 64
        out, out_start, out_cap = (np.zeros(arena, np.int32), np.zeros_like(nstart),
                                   np.zeros_like(ncap))
        self.state[K.MTOP] = K._ns_compact(members, nstart, nlen, ncap, last, out, out_start,
                                           out_cap)
        self.seg = (out, out_start, nlen.copy(), out_cap, nkey.copy())

    def namespace_slots_of(self, x):
        """Every live slot of namespace ``x``, key-only ones included."""
        out = np.empty(self.size, np.int64)
        return out[:K._ns_slots(self.ns, self.gen, self.high_water, x, out)]

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
        new.khash = np.zeros(capacity if self.has_keys else 0, np.uint32)
        new.khash[:min(used, new.khash.shape[0])] = self.khash[:min(used, new.khash.shape[0])]
        new.ktable = np.full(key_table_size(capacity) if self.has_keys else 0, -1, np.int32)
        K._key_rebuild(new.ktable, new.khash, new.ns, new.gen, used)
        return new

    # ------------------------------------------------------------ scans

    def _gathered(self, x):
        """``(members, lo, m)`` when namespace ``x`` is best read through its segment, else None."""
        members, nstart, nlen = self.seg[:3]
        if x >= nstart.shape[0]:
            return members, 0, 0
        m = nlen.item(x)
        if m * GATHER_RATIO >= self.state.item(K.HW):
            return None
        lo = nstart.item(x)
        return members, lo, max(0, min(m, members.shape[0] - lo))

    def nearest(self, code, threads, x=0):
        """``(slot, distance)`` of the nearest live slot of namespace ``x``; slot -1 when none."""
        seg = self._gathered(x)
        if seg is not None:
            return K._gather_top1(self.codes, seg[0], seg[1], seg[2], code, self.tick)
        n = self.state.item(K.HW)  # a Python int: cheaper for Numba to dispatch on
        if threads > 1:
            return K._scan_top1_parallel(self.codes, n, code, self.gen, self.tick, self.ns, x,
                                         threads)
        return K._scan_top1(self.codes, n, code, self.gen, self.tick, self.ns, x)

    def top1(self, queries, threads, slots, dists, x=0):
        """Nearest live slot of namespace ``x`` to each code of ``queries`` (-1: none)."""
        n = self.high_water
        seg = self._gathered(x)
        if seg is not None:
            K._gather_batch(self.codes, seg[0], seg[1], seg[2], queries, self.tick, slots, dists)
        elif queries.shape[0] == 1:
            slots[0], dists[0] = self.nearest(queries[0], threads, x)
        elif threads > 1:
            K._scan_batch_parallel(self.codes, n, queries, self.gen, self.tick, self.ns, x,
                                   slots, dists, min(threads, queries.shape[0]))
        else:
            K._scan_batch(self.codes, n, queries, self.gen, self.tick, self.ns, x, slots, dists)

    def topk(self, query, threads, slots, dists, x=0):
        """The ``len(slots)`` nearest live slots of namespace ``x``, best first; returns how many."""
        slots[:] = -1
        seg = self._gathered(x)
        if seg is not None:
            return K._gather_topk(self.codes, seg[0], seg[1], seg[2], query, self.tick, slots,
                                  dists)
        if threads > 1:
            return K._topk_parallel(self.codes, self.high_water, query, self.gen, self.tick,
                                    self.ns, x, slots, dists, threads)
        return K._topk(self.codes, self.high_water, query, self.gen, self.tick, self.ns, x,
                       slots, dists)

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

    def insert(self, codes, expires, now, flags, hashes, check_keys=False):
        """Store rows of ``codes``: ``(rows stored, slots, entry ids, entries evicted)``.

        ``expires`` holds an expiry time per row, or is empty for rows that
        never expire; ``flags`` the namespace id and flags of each row and
        ``hashes`` its key hash (read for ``KEYED`` rows). The caller sizes
        the slot arrays first (``grown``); the arena is compacted here when
        a segment needs it. With ``check_keys``, rows stop at the first
        whose key hash is already in its namespace: ``slots`` then holds
        that slot at that row, for the caller to settle.
        """
        m = codes.shape[0]
        slots = np.empty(m, np.int64)
        gens = np.empty(m, np.uint32)
        done, evicted = self._insert(codes, expires, flags, hashes, now, check_keys, slots, gens)
        while done < m and slots[done] < 0:
            self.compact(int(flags[done]) & K.ID_MASK, m - done)
            more, ev = self._insert(codes[done:], expires[done:] if expires.shape[0] else expires,
                                    flags[done:], hashes[done:], now, check_keys, slots[done:],
                                    gens[done:])
            done += more
            evicted += ev
        if done == 1:  # a single put: plain ints beat array arithmetic
            return done, slots, [entry_id(gens.item(0), slots.item(0))], evicted
        return done, slots, entry_ids(gens[:done], slots[:done]), evicted

    def _insert(self, codes, expires, flags, hashes, now, check_keys, slots, gens):
        members, nstart, nlen, ncap, nkey = self.seg
        return K._insert(self.codes, codes, expires, flags, hashes, self.prev, self.nxt, self.gen,
                         self.tick, self.count, self.created, self.seen, self.exp, self.heap,
                         self.hpos, self.ns, self.npos, self.khash, self.ktable, members, nstart,
                         nlen, ncap, nkey, self.state, now, check_keys, slots, gens)

    def replace(self, slot, code, flags, expires, now):
        """New code (or none, with ``KEY_ONLY`` in ``flags``) and expiry for a keyed slot."""
        for _ in range(2):
            members, nstart, nlen, ncap, nkey = self.seg
            if K._replace(self.codes, code, flags, expires, self.prev, self.nxt, self.tick,
                          self.count, self.created, self.seen, self.exp, self.heap, self.hpos,
                          self.ns, self.npos, members, nstart, nlen, ncap, nkey, self.state, now,
                          slot):
                return
            self.compact(int(self.ns[slot]) & K.ID_MASK, 1)
        raise AssertionError("a compacted arena has room for one more slot")

    def find_key(self, h, x, start=-1):
        """``(slot, bucket)`` of the next slot whose key hash is ``h`` in namespace ``x``."""
        if not self.has_keys:
            return -1, -1
        return K._key_find(self.ktable, self.khash, self.ns, h, x, start)

    def touch(self, slot, now):
        """Record a hit: most recent, counted, last use ``now``."""
        K._touch(self.prev, self.nxt, self.tick, self.count, self.created, self.seen, self.state,
                 slot, now)

    def release(self, slot):
        members, nstart, nlen, _, nkey = self.seg
        K._release(self.prev, self.nxt, self.gen, self.exp, self.heap, self.hpos, self.ns,
                   self.npos, self.khash, self.ktable, members, nstart, nlen, nkey, self.state,
                   slot)

    def release_all(self, slots):
        members, nstart, nlen, _, nkey = self.seg
        K._release_all(self.prev, self.nxt, self.gen, self.exp, self.heap, self.hpos, self.ns,
                       self.npos, self.khash, self.ktable, members, nstart, nlen, nkey,
                       self.state, slots)

    def expiry_due(self, now):
        return self.has_expiry and self.state[K.HEAPN] > 0 and self.exp[self.heap[0]] <= now

    def purge(self, now):
        """Release every entry expired at ``now``; returns their slots."""
        out = np.empty(int(self.state[K.HEAPN]), np.int64)
        members, nstart, nlen, _, nkey = self.seg
        m = K._purge_expired(self.prev, self.nxt, self.gen, self.exp, self.heap, self.hpos,
                             self.ns, self.npos, self.khash, self.ktable, members, nstart, nlen,
                             nkey, self.state, now, out)
        return out[:m].tolist()

    def check(self):
        """``(0, -1)`` when every link is sound, else ``(problem, slot)`` (``_kernels``)."""
        problem = K._check_slots(self.prev, self.nxt, self.gen, self.exp, self.heap, self.hpos,
                                 self.vnorm, self.state)
        if problem[0]:
            return problem
        return K._check_spaces(self.gen, self.ns, self.npos, *self.seg, self.khash, self.ktable,
                               self.state)
