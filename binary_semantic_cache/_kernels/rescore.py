"""Exact cosines of stored embedding copies, to rescore the Hamming candidates."""

import numba
import numpy as np

from .._core.jit import JIT

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
