"""Random-hyperplane encoder: float embeddings to packed binary codes."""

import hashlib
import sys

import numpy as np

from ._core import validate as _validate

MIN_BITS, MAX_BITS = 64, 4096
# Packed bytes read as little-endian words; native when the machine is little-endian.
_WORD = np.uint64 if sys.byteorder == "little" else np.dtype("<u8")


class BinaryEncoder:
    """Turn embeddings into binary codes by random-hyperplane projection.

    Each of ``code_bits`` hyperplanes is a Gaussian vector; bit ``i`` of a code
    is 1 when the embedding lies on the positive side of hyperplane ``i``. Two
    embeddings at angle ``theta`` disagree on each bit with probability
    ``theta / pi``, so the Hamming distance ``d`` estimates the cosine as
    ``cos(pi * d / code_bits)``.

    Parameters
    ----------
    embedding_dim : int
        Length of the embeddings to encode (e.g. 384, 768, 1536).
    code_bits : int, default 256
        Bits per code: a multiple of 64 from 64 to 4096.
    seed : int, default 42
        Seed of ``numpy.random.default_rng`` that draws the hyperplanes. The
        same ``(embedding_dim, code_bits, seed)`` gives the same hyperplanes in
        every process, on every platform.

    Notes
    -----
    Bit order: a code is ``n_words = code_bits // 64`` little-endian-numbered
    ``uint64`` words; bit ``i`` is in word ``i // 64`` at position ``i % 64``
    (value ``1 << (i % 64)``).

    Examples
    --------
    >>> enc = BinaryEncoder(embedding_dim=4, code_bits=64, seed=0)
    >>> code = enc.encode([0.1, -0.3, 0.5, 0.2])
    >>> code.shape, code.dtype
    ((1,), dtype('uint64'))
    >>> enc.encode(np.ones((3, 4))).shape
    (3, 1)
    """

    def __init__(self, embedding_dim, code_bits=256, seed=42):
        self._dim = _validate.positive_int(embedding_dim, "embedding_dim", high=1 << 20)
        self._bits = _validate.positive_int(code_bits, "code_bits", low=MIN_BITS, high=MAX_BITS)
        if self._bits % 64:
            raise ValueError(f"expected code_bits to be a multiple of 64, got {self._bits}; "
                             f"use {self._bits // 64 * 64 or 64} or {(self._bits // 64 + 1) * 64}")
        self._seed = _validate.positive_int(seed, "seed", low=0, high=2**63 - 1)
        rng = np.random.default_rng(self._seed)
        # Drawn in float64 so the stream is the documented one; kept in float32
        # because the projection is a BLAS matmul and sign bits need no more.
        self._planes = rng.standard_normal((self._dim, self._bits)).astype(np.float32)
        # The same planes with each group of 8 reversed: projected onto these, the
        # signs come out in the order NumPy's default (big-endian) packbits
        # wants, the cheapest packing it has, and land in the documented bits.
        self._packing_planes = np.ascontiguousarray(self._planes[:, _byte_reversed(self._bits)])

    @property
    def embedding_dim(self):
        """Length of the embeddings this encoder accepts."""
        return self._dim

    @property
    def code_bits(self):
        """Bits per code."""
        return self._bits

    @property
    def n_words(self):
        """``uint64`` words per code (``code_bits // 64``)."""
        return self._bits // 64

    @property
    def seed(self):
        """Seed the hyperplanes were drawn from."""
        return self._seed

    @property
    def fingerprint(self):
        """``(embedding_dim, code_bits, seed, sha256 of the hyperplanes)``."""
        digest = hashlib.sha256(self._planes.astype("<f4").tobytes()).hexdigest()
        return (self._dim, self._bits, self._seed, digest)

    def encode(self, x):
        """Binary code(s) of ``x``.

        Parameters
        ----------
        x : array_like of real numbers
            One embedding, shape ``(embedding_dim,)``, or many, shape
            ``(n, embedding_dim)``. Any real dtype, lists and strided views.

        Returns
        -------
        numpy.ndarray of uint64
            Shape ``(n_words,)`` for one embedding, ``(n, n_words)`` for many.
        """
        return self._encode_checked(_validate.embeddings(x, self._dim, ndim=None))

    def _encode_checked(self, rows):
        """Encode float32 rows that already passed the validation gate."""
        # A 1-D product runs as BLAS gemv, measurably cheaper for one embedding.
        return _pack_bytes_reversed((rows @ self._packing_planes) > 0)

    def __eq__(self, other):
        if not isinstance(other, BinaryEncoder):
            return NotImplemented
        return (self._dim, self._bits, self._seed) == (other._dim, other._bits, other._seed)

    def __hash__(self):
        return hash((self._dim, self._bits, self._seed))

    def __repr__(self):
        return (f"BinaryEncoder(embedding_dim={self._dim}, code_bits={self._bits}, "
                f"seed={self._seed})")


def pack_signs(signs):
    """Boolean rows of ``64 * n_words`` to ``uint64`` words: bit i in word i // 64 at i % 64."""
    return _pack_bytes_reversed(np.take(signs, _byte_reversed(signs.shape[-1]), axis=-1))


def _pack_bytes_reversed(signs):
    """``pack_signs`` of signs whose groups of 8 come reversed (see ``_packing_planes``)."""
    # Big-endian packbits puts sign 8k + 7 - b at bit b of byte k, and bytes
    # 8w..8w+7 read as one little-endian word w.
    words = np.packbits(signs, axis=-1).view(_WORD)
    return words if _WORD is np.uint64 else words.astype(np.uint64)


def _byte_reversed(bits):
    """The permutation that reverses each group of 8 of ``range(bits)`` (its own inverse)."""
    return np.arange(bits).reshape(-1, 8)[:, ::-1].ravel()
