"""The arrays behind one cache, and how they grow."""

import numpy as np

from .. import _kernels as K

INITIAL_CAPACITY = 1024

# Per-slot arrays and their dtypes; codes are added separately (2-D).
_META = (("prev", np.int32), ("nxt", np.int32), ("gen", np.uint32), ("tick", np.uint32),
         ("count", np.uint32), ("created", np.float64), ("seen", np.float32))
_EXPIRY = (("exp", np.float64, np.inf), ("heap", np.int32, -1), ("hpos", np.int32, -1))

#: Stored copies of embeddings for rescoring: dtype, and whether a norm is kept.
#: float16 values are kept as their bit patterns (uint16): Numba has no float16.
RESCORE = {"int8": (np.int8, True), "float16": (np.uint16, False),
           "float32": (np.float32, False)}


class Index:
    """Codes and per-slot metadata of one cache (layout in ``_kernels``).

    Growing builds a new ``Index`` rather than resizing in place, so a reader
    that took a reference before the growth keeps a consistent snapshot.
    Expiry arrays stay empty until the first entry with a time to live;
    ``vectors`` (and ``vnorm`` for int8) are empty unless the cache rescores.
    """

    __slots__ = ("codes", "state", "exp", "heap", "hpos", "vectors", "vnorm") + tuple(
        name for name, _ in _META)

    def __init__(self, n_words, capacity, rescore=None, dim=0):
        self.codes = np.zeros((n_words, capacity), np.uint64)
        for name, dtype in _META:
            setattr(self, name, np.zeros(capacity, dtype))
        for name, dtype, _ in _EXPIRY:
            setattr(self, name, np.zeros(0, dtype))
        dtype, with_norm = RESCORE[rescore] if rescore else (np.float32, False)
        self.vectors = np.zeros((capacity if rescore else 0, dim if rescore else 0), dtype)
        self.vnorm = np.zeros(capacity if with_norm else 0, np.float32)
        self.state = np.zeros(K.STATE_LEN, np.int64)
        self.state[[K.HEAD, K.TAIL, K.FREE]] = -1

    @classmethod
    def from_arrays(cls, arrays, state):
        """An Index over existing arrays (e.g. views of a loaded file), without copying."""
        index = cls.__new__(cls)
        index.codes = arrays["codes"]
        for name, _ in _META:
            setattr(index, name, arrays[name])
        for name, dtype, _ in _EXPIRY:
            setattr(index, name, arrays.get(name, np.zeros(0, dtype)))
        index.vectors = arrays.get("vectors", np.zeros((0, 0), np.float32))
        index.vnorm = arrays.get("vnorm", np.zeros(0, np.float32))
        index.state = np.array(state, np.int64)
        return index

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
        names = ("codes", "vectors", "vnorm") + tuple(n for n, _ in _META) + tuple(
            n for n, _, _ in _EXPIRY)
        return sum(getattr(self, n).nbytes for n in names)

    def enable_expiry(self):
        """Allocate the expiry arrays (16 more bytes per slot)."""
        for name, dtype, fill in _EXPIRY:
            setattr(self, name, np.full(self.capacity, fill, dtype))

    def grown(self, capacity):
        """A copy with room for ``capacity`` slots."""
        new = Index.__new__(Index)
        used = self.high_water
        new.codes = np.zeros((self.codes.shape[0], capacity), np.uint64)
        new.codes[:, :used] = self.codes[:, :used]
        for name in [n for n, _ in _META] + ["vnorm"] + [n for n, _, _ in _EXPIRY]:
            old = getattr(self, name)
            fresh = next((f for n, _, f in _EXPIRY if n == name), 0)
            grown = np.full(capacity if old.shape[0] else 0, fresh, old.dtype)
            grown[:used] = old[:used]
            setattr(new, name, grown)
        old = self.vectors
        new.vectors = np.zeros((capacity if old.shape[0] else 0, old.shape[1]), old.dtype)
        new.vectors[:used] = old[:used]
        new.state = self.state.copy()
        return new
