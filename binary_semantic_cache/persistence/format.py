"""Byte layout of ``entries.bin`` (described for users in docs/file-format.md)."""

import math
import struct
from dataclasses import dataclass

import numpy as np

from .. import _kernels as K
from .._core.index import (
    EXPIRY_ARRAYS,
    NAMESPACE_ARRAYS,
    RESCORE,
    SLOT_ARRAYS,
    SLOT_ARRAYS_V1,
)
from ..errors import ByteOrderError, CorruptFileError, FormatVersionError, TruncatedFileError

MAGIC = b"BSCACHE\x00"
RESPONSES_MAGIC = b"BSCRESP\x00"
VERSION = 2
#: Versions this release reads; version 1 had no namespaces or keys.
READABLE = (1, 2)
BYTE_ORDER_MARK = 0x01020304
HEADER_BYTES = 512
ALIGN = 64

# magic, version, byte-order mark, code_bits, n_words, embedding_dim, has_expiry,
# seed, live entries, slots ever used, capacity (array length), max_entries, threshold,
# ttl (NaN: none),
# kernel state (8 x int64), hits, misses, evictions, expirations, sha256 of the projection,
# rescore kind (index into RESCORE_KINDS), rescore_k; from version 2: exact hits (after
# expirations), has_keys, key table buckets, namespace ids, namespace arena length, salt
# of the key hashes
_HEADER_V1 = struct.Struct("<8sIIIIIIQQQQQdd8q4Q32sII")
_HEADER = struct.Struct("<8sIIIIIIQQQQQdd8q5Q32sIIIQQQ16s")
RESCORE_KINDS = (None, "int8", "float16", "float32")
# Hits, misses, evictions and expirations: no cache reaches this, a damaged header may.
_COUNTER_MAX = 2**62


@dataclass
class Header:
    code_bits: int
    n_words: int
    embedding_dim: int
    has_expiry: bool
    seed: int
    count: int
    slots: int
    capacity: int
    max_entries: int
    threshold: float
    ttl: float | None
    state: tuple
    counters: tuple  # hits, misses, evictions, expirations
    projection_sha256: bytes
    rescore: str | None = None
    rescore_k: int = 10
    has_keys: bool = False
    key_buckets: int = 0
    namespaces: int = 1
    arena: int = 0
    version: int = VERSION
    salt: bytes = bytes(16)

    def pack(self):
        raw = _HEADER.pack(
            MAGIC, VERSION, BYTE_ORDER_MARK, self.code_bits, self.n_words, self.embedding_dim,
            int(self.has_expiry), self.seed, self.count, self.slots, self.capacity,
            self.max_entries,
            self.threshold, math.nan if self.ttl is None else self.ttl, *self.state,
            *(min(c, _COUNTER_MAX) for c in self.counters), self.projection_sha256,
            RESCORE_KINDS.index(self.rescore), self.rescore_k, int(self.has_keys),
            self.key_buckets, self.namespaces, self.arena, self.salt)
        return raw.ljust(HEADER_BYTES, b"\x00")

    def layout(self):
        """``{name: (offset, dtype, shape)}`` of every array, and the file's total size."""
        arrays = {}
        offset = HEADER_BYTES
        # Codes are stored word-major, [n_words, capacity], as in memory.
        fields = [("codes", "<u8", (self.n_words, self.capacity))]
        slot_arrays = SLOT_ARRAYS_V1 if self.version == 1 else SLOT_ARRAYS
        fields += [(name, dtype, (self.capacity,)) for name, dtype in slot_arrays]
        if self.has_expiry:
            fields += [(name, dtype, (self.capacity,)) for name, dtype, _ in EXPIRY_ARRAYS]
        if self.rescore:
            dtype, with_norm = RESCORE[self.rescore]
            fields.append(("vectors", dtype, (self.capacity, self.embedding_dim)))
            if with_norm:
                fields.append(("vnorm", "<f4", (self.capacity,)))
        if self.version > 1:
            if self.has_keys:
                fields += [("kslot", "<i4", (self.key_buckets,)),
                           ("kdisp", "|u1", (self.key_buckets,))]
            fields += [(name, "<i4", (self.namespaces,)) for name in NAMESPACE_ARRAYS]
            fields.append(("members", "<i4", (self.arena,)))
        fields.append(("resp_off", "<u8", (self.slots + 1,)))
        if self.version > 1:
            fields += [("key_off", "<u8", (self.slots + 1,)),
                       ("name_off", "<u8", (self.namespaces + 1,))]
        for name, dtype, shape in fields:
            offset = -(-offset // ALIGN) * ALIGN
            arrays[name] = (offset, np.dtype(dtype), shape)
            offset += np.dtype(dtype).itemsize * math.prod(shape)
        return arrays, offset


def unpack_header(raw, where):
    """Parse and sanity-check a header, or raise the named error for what is wrong."""
    if len(raw) < _HEADER.size:
        raise TruncatedFileError(f"{where}: truncated header: expected at least "
                                 f"{HEADER_BYTES:,} bytes, got {len(raw):,}")
    fields = _HEADER.unpack_from(raw)
    magic, version, mark = fields[:3]
    if magic != MAGIC:
        raise CorruptFileError(f"{where}: not a binary_semantic_cache index (magic {magic!r}, "
                               f"expected {MAGIC!r})")
    if mark != BYTE_ORDER_MARK:
        if mark == int.from_bytes(BYTE_ORDER_MARK.to_bytes(4, "little"), "big"):
            raise ByteOrderError(f"{where}: written with the opposite byte order; this "
                                 "reader expects little-endian files")
        raise CorruptFileError(f"{where}: byte-order mark {mark:#x} is neither order")
    if version not in READABLE:
        raise FormatVersionError(f"{where}: format version {version}, this release reads "
                                 f"versions {READABLE}; use the release that wrote it")
    if version == 1:
        fields = _HEADER_V1.unpack_from(raw)
        fields = fields[:26] + (0,) + fields[26:] + (0, 0, 1, 0, bytes(16))  # no keys, names
    else:
        fields = _HEADER.unpack_from(raw)
    (code_bits, n_words, dim, has_expiry, seed, count, slots, capacity, max_entries, threshold,
     ttl) = fields[3:14]
    state, counters, sha = fields[14:22], fields[22:27], fields[27]
    kind, rescore_k, has_keys, key_buckets, namespaces, arena, salt = fields[28:35]
    if kind >= len(RESCORE_KINDS):
        raise CorruptFileError(f"{where}: unknown rescore kind {kind}")
    header = Header(code_bits, n_words, dim, bool(has_expiry), seed, count, slots, capacity,
                    max_entries, threshold, None if math.isnan(ttl) else ttl, state, counters, sha,
                    RESCORE_KINDS[kind], rescore_k, bool(has_keys), key_buckets, namespaces, arena,
                    version, salt)
    _check(header, where)
    return header


def _check(h, where):
    problems = []
    if h.code_bits % 64 or not 64 <= h.code_bits <= 4096 or h.n_words != h.code_bits // 64:
        problems.append(f"code_bits {h.code_bits} with {h.n_words} words")
    if not 1 <= h.max_entries < 2**31 or not 0 <= h.slots <= h.capacity <= h.max_entries:
        problems.append(f"{h.slots} used of {h.capacity} slots for max_entries {h.max_entries}")
    if not 0 <= h.count <= h.slots or h.state[K.SIZE] != h.count or h.state[K.HW] != h.slots:
        problems.append(f"{h.count} entries in {h.slots} slots, state {h.state[:7]}")
    if any(not -1 <= h.state[i] < h.slots for i in (K.HEAD, K.TAIL, K.FREE)):
        problems.append(f"list ends {h.state[:3]} outside {h.slots} slots")
    if not 0 <= h.state[K.HEAPN] <= (h.count if h.has_expiry else 0):
        problems.append(f"expiry heap of {h.state[K.HEAPN]}")
    if not -1 <= h.threshold <= 1 or (h.ttl is not None and not 0 < h.ttl < math.inf):
        problems.append(f"threshold {h.threshold}, ttl {h.ttl}")
    if any(c > _COUNTER_MAX for c in h.counters):
        problems.append(f"counters {h.counters}")
    if not 0 <= h.seed < 2**63:
        problems.append(f"seed {h.seed}")
    if not 0 <= h.state[K.TICK] <= K.TICK_MAX:
        problems.append(f"recency tick {h.state[K.TICK]}")
    if not 1 <= h.embedding_dim <= 1 << 20:
        problems.append(f"embedding_dim {h.embedding_dim}")
    if not 1 <= h.rescore_k <= 10_000:
        problems.append(f"rescore_k {h.rescore_k}")
    if h.version > 1:
        if not 1 <= h.namespaces <= K.ID_MASK + 1 or not (
                0 <= h.state[K.MTOP] <= h.arena <= K.POS_MASK):
            problems.append(f"{h.namespaces} namespace ids, arena {h.state[K.MTOP]} of {h.arena}")
        if h.has_keys != (h.key_buckets > 0) or (h.has_keys and not h.max_entries < h.key_buckets
                                                 < 2**31):
            problems.append(f"key table of {h.key_buckets} buckets for {h.capacity} slots")
    if problems:
        raise CorruptFileError(f"{where}: inconsistent header: " + "; ".join(problems))
