"""Import a cache saved by binary-semantic-cache 1.0.1 (its "v3" directory).

That layout is::

    header.json      {"version": 3, ...}; may give "num_entries", "max_entries",
                     "similarity_threshold" and "code_bits"
    entries.bin      one 44-byte little-endian record per entry: 4 uint64 code
                     words, then uint32 created, uint32 last_accessed and
                     uint32 access_count (whole epoch seconds)
    responses.pkl    a pickle of the responses: a list in entry order, or a
                     dict from entry index to response

It records neither the embedding dimension nor the encoder's seed, so the
caller names the encoder; the codes are imported bit for bit and only make
sense with the encoder that produced them.
"""

import json
import os
import pickle
from pathlib import Path

import numpy as np

from ._core.index import Index
from ._core.responses import Keys, Responses
from ._core.snapshot import Snapshot
from .cache import BinarySemanticCache
from .encoder import BinaryEncoder
from .errors import (
    CacheFileNotFoundError,
    CorruptFileError,
    EncoderMismatchError,
    FormatVersionError,
    TruncatedFileError,
    UnsafeResponseError,
)

RECORD = np.dtype([("codes", "<u8", 4), ("created", "<u4"), ("last", "<u4"), ("count", "<u4")])


def import_v3(path, *, encoder, trust_pickle=False, max_entries=None):
    """A :class:`BinarySemanticCache` holding the entries of a 1.0.1 save.

    Parameters
    ----------
    path : str or Path
        The directory 1.0.1's ``save`` wrote.
    encoder : BinaryEncoder
        The encoder the codes were made with (256 bits).
    trust_pickle : bool, default False
        ``responses.pkl`` is a pickle, and reading a pickle runs whatever code
        its writer put in it. Pass True only for files you made yourself.
    max_entries : int, optional
        Capacity of the new cache; by default the saved one, or the number of
        entries if larger.
    """
    path = Path(path)
    if not isinstance(encoder, BinaryEncoder):
        raise TypeError(f"expected encoder as a BinaryEncoder, got {type(encoder).__name__}")
    if encoder.code_bits != 256:
        raise EncoderMismatchError(f"1.0.1 saves hold 256-bit codes, the encoder makes "
                                   f"{encoder.code_bits}-bit codes; pass BinaryEncoder(dim, 256)")
    files = {name: path / name for name in ("header.json", "entries.bin", "responses.pkl")}
    for file in files.values():
        if not file.exists():
            raise CacheFileNotFoundError(f"{file}: missing; not a 1.0.1 cache directory")
    if not trust_pickle:
        raise UnsafeResponseError(
            f"{files['responses.pkl']} is a pickle: reading it runs any code its writer put "
            "in it. Pass trust_pickle=True (bsc migrate --trust-pickle) only if you made "
            "these files yourself")
    try:
        header = json.loads(files["header.json"].read_text())
    except ValueError as exc:
        raise CorruptFileError(f"{files['header.json']}: not JSON ({exc})") from None
    if header.get("version") != 3:
        raise FormatVersionError(f"{files['header.json']}: version {header.get('version')!r}, "
                                 "expected 3")
    if header.get("code_bits", 256) != 256:
        raise FormatVersionError(f"{files['header.json']}: code_bits {header['code_bits']}, "
                                 "expected 256")
    raw = files["entries.bin"].read_bytes()
    count = header.get("num_entries", len(raw) // RECORD.itemsize)
    if len(raw) != count * RECORD.itemsize:
        raise TruncatedFileError(f"{files['entries.bin']}: expected {count * RECORD.itemsize:,} "
                                 f"bytes for {count:,} entries, got {len(raw):,}")
    records = np.frombuffer(raw, RECORD)
    with open(files["responses.pkl"], "rb") as f:
        stored = pickle.load(f)  # the caller vouched for this file
    if isinstance(stored, dict):
        responses = [stored.get(i) for i in range(count)]
    elif isinstance(stored, (list, tuple)) and len(stored) == count:
        responses = list(stored)
    else:
        raise CorruptFileError(f"{files['responses.pkl']}: expected {count} responses, got "
                               f"{type(stored).__name__} of {len(stored) if hasattr(stored, '__len__') else '?'}")
    capacity = max_entries or max(int(header.get("max_entries", 0)), count, 1)
    # Oldest use first, so the recency list ends in the saved order.
    order = np.argsort(records["last"], kind="stable")
    index = Index(encoder.n_words, min(capacity, max(count, 1)))
    flags = np.zeros(count, np.int32)  # the default namespace, no keys
    _, slots, _, _, _ = index.insert(np.ascontiguousarray(records["codes"][order],
                                                          dtype=np.uint64),
                                     np.zeros(0), 0.0, flags, flags.astype(np.int64))
    index.created[slots] = records["created"][order]
    index.seen[slots] = records["last"][order].astype(np.float64) - records["created"][order]
    index.count[slots] = records["count"][order]
    stored = Responses(index.capacity)
    for slot, i in zip(slots.tolist(), order.tolist()):
        stored[slot] = responses[i]
    snapshot = Snapshot(encoder, capacity, float(header.get("similarity_threshold", 0.80)), None,
                        None, 10, (0, 0, 0, 0, 0), index, stored, Keys(index.capacity),
                        [None], os.urandom(16))
    return BinarySemanticCache._from_snapshot(snapshot)
