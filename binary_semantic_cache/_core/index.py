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
               ("count", "<u4"), ("created", "<f8"), ("seen", "<f4"))
#: Present from the first entry with a time to live: (name, dtype, value of a free slot).
EXPIRY_ARRAYS = (("exp", "<f8", np.inf), ("heap", "<i4", -1), ("hpos", "<i4", -1))
#: Stored copies of embeddings for rescoring: dtype, and whether a norm is kept.
#: float16 values are kept as their bit patterns (uint16): Numba has no float16.
RESCORE = {"int8": ("<i1", True), "float16": ("<u2", False), "float32": ("<f4", False)}

# float16 bit pattern -> float32 value, for the rescoring kernels (Numba has no float16).
_HALF = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)

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


class Index:
    """Codes and per-slot metadata of one cache (layout in ``_kernels.state``).

    Growing builds a new ``Index`` rather than resizing in place, so a reader
    that took a reference before the growth keeps a consistent snapshot.
    Expiry arrays stay empty until the first entry with a time to live;
    ``vectors`` (and ``vnorm`` for int8) are empty unless the cache rescores.
    ``mapped`` is True while the arrays are views of a loaded file's pages:
    the first insert then copies them into memory.
    """

    __slots__ = ("codes", "state", "exp", "heap", "hpos", "vectors", "vnorm", "mapped") + tuple(
        name for name, _ in SLOT_ARRAYS)

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
        index.state = np.array(state, np.int64)
        index.mapped = mapped
        return index

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
    def nbytes(self):
        """Bytes of the per-slot arrays (the fixed 64-byte ``state`` aside)."""
        names = ("codes", "vectors", "vnorm") + tuple(n for n, _ in SLOT_ARRAYS) + tuple(
            n for n, _, _ in EXPIRY_ARRAYS)
        return sum(getattr(self, n).nbytes for n in names)

    def enable_expiry(self):
        """Allocate the expiry arrays (16 more bytes per slot)."""
        for name, dtype, fill in EXPIRY_ARRAYS:
            setattr(self, name, np.full(self.capacity, fill, native(dtype)))

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
        return new

    # ------------------------------------------------------------ scans

    def nearest(self, code, threads):
        """``(slot, distance)`` of the nearest live slot to ``code``; slot -1 when none."""
        n = self.state.item(K.HW)  # a Python int: cheaper for Numba to dispatch on
        if threads > 1:
            return K._scan_top1_parallel(self.codes, n, code, self.gen, self.tick, threads)
        return K._scan_top1(self.codes, n, code, self.gen, self.tick)

    def top1(self, queries, threads, slots, dists):
        """Nearest live slot of each code in ``queries`` into ``slots``/``dists`` (-1: none)."""
        n = self.high_water
        if queries.shape[0] == 1:
            slots[0], dists[0] = self.nearest(queries[0], threads)
        elif threads > 1:
            K._scan_batch_parallel(self.codes, n, queries, self.gen, self.tick, slots, dists,
                                   min(threads, queries.shape[0]))
        else:
            K._scan_batch(self.codes, n, queries, self.gen, self.tick, slots, dists)

    def topk(self, query, threads, slots, dists):
        """The ``len(slots)`` nearest live slots to ``query``, best first; returns how many."""
        slots[:] = -1
        if threads > 1:
            return K._topk_parallel(self.codes, self.high_water, query, self.gen, self.tick,
                                    slots, dists, threads)
        return K._topk(self.codes, self.high_water, query, self.gen, self.tick, slots, dists)

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

    def insert(self, codes, expires, now):
        """Store each row of ``codes``: ``(slots, entry ids, entries evicted)``.

        ``expires`` holds an expiry time per row, or is empty for rows that
        never expire. The caller sizes the arrays first (``grown``).
        """
        slots = np.empty(codes.shape[0], np.int64)
        gens = np.empty(codes.shape[0], np.uint32)
        evicted = K._insert(self.codes, codes, expires, self.prev, self.nxt, self.gen, self.tick,
                            self.count, self.created, self.seen, self.exp, self.heap, self.hpos,
                            self.state, now, slots, gens)
        if len(slots) == 1:  # a single put: plain ints beat array arithmetic
            return slots, [entry_id(gens.item(0), slots.item(0))], evicted
        return slots, entry_ids(gens, slots), evicted

    def touch(self, slot, now):
        """Record a hit: most recent, counted, last use ``now``."""
        K._touch(self.prev, self.nxt, self.tick, self.count, self.created, self.seen, self.state,
                 slot, now)

    def release(self, slot):
        K._release(self.prev, self.nxt, self.gen, self.exp, self.heap, self.hpos, self.state, slot)

    def expiry_due(self, now):
        return self.has_expiry and self.state[K.HEAPN] > 0 and self.exp[self.heap[0]] <= now

    def purge(self, now):
        """Release every entry expired at ``now``; returns their slots."""
        out = np.empty(int(self.state[K.HEAPN]), np.int64)
        m = K._purge_expired(self.prev, self.nxt, self.gen, self.exp, self.heap, self.hpos,
                             self.state, now, out)
        return out[:m].tolist()

    def check(self):
        """``(0, -1)`` when every link is sound, else ``(problem, slot)`` (``_kernels.slots``)."""
        return K._check_slots(self.prev, self.nxt, self.gen, self.exp, self.heap, self.hpos,
                              self.vnorm, self.state)
