"""Saving and loading caches: atomic, checksummed, memory-mapped.

A saved cache is a directory::

    PATH/manifest.json          which data directory is current, with sizes and SHA-256s
    PATH/data-<token>/entries.bin     header + index arrays (docs/file-format.md)
    PATH/data-<token>/responses.bin   one tagged record per slot

A save writes a new data directory beside the current one, flushes it to disk,
then replaces ``manifest.json`` with one atomic rename. Until that rename the
old manifest names the old, complete data; after it, the new. Leftover data
directories are removed by the next save.
"""

import hashlib
import json
import mmap as mmap_module
import os
import secrets
import shutil
import time
from pathlib import Path

import numpy as np

from . import _format as F
from . import _kernels as K
from ._index import Index
from ._responses import Responses
from .encoder import BinaryEncoder
from .errors import (
    CacheFileNotFoundError,
    ChecksumError,
    CorruptFileError,
    EncoderMismatchError,
    FormatVersionError,
    TruncatedFileError,
    UnsafeResponseError,
)

MANIFEST = "manifest.json"
FILES = ("entries.bin", "responses.bin")
_CHUNK = 1 << 22


def save(cache, path, *, allow_pickle=False):
    path = Path(path)
    with cache._lock:
        cache._purge(cache._clock())
        entries, responses = _serialise(cache, allow_pickle)
    _prepare_directory(path)
    token = f"{time.time_ns():x}-{secrets.token_hex(4)}"
    staging = path / f".data-{token}.tmp"
    staging.mkdir()
    try:
        digests = {}
        for name, parts in (("entries.bin", entries), ("responses.bin", responses)):
            digests[name] = _write_synced(staging / name, parts)
        _fsync_dir(staging)
        final = path / f"data-{token}"
        os.replace(staging, final)
        _fsync_dir(path)
        manifest = {"format": "binary_semantic_cache", "version": F.VERSION,
                    "data": final.name, "pickle": allow_pickle, "files": digests}
        tmp = path / f".{MANIFEST}.{token}.tmp"
        _write_synced(tmp, [json.dumps(manifest, indent=2).encode()])
        os.replace(tmp, path / MANIFEST)
        _fsync_dir(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in path.iterdir():  # superseded or abandoned saves
        if old.name != final.name and (old.name.startswith(("data-", ".data-", f".{MANIFEST}"))):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


def _serialise(cache, allow_pickle):
    """The two files' contents as lists of byte strings; the lock is held."""
    idx, enc = cache._index, cache._encoder
    slots = idx.high_water
    header = F.Header(
        code_bits=enc.code_bits, n_words=enc.n_words, embedding_dim=enc.embedding_dim,
        has_expiry=idx.has_expiry, seed=enc.seed, count=idx.size, slots=slots,
        capacity=idx.capacity, max_entries=cache._max, threshold=cache._threshold, ttl=cache._ttl,
        state=tuple(int(v) for v in idx.state),
        counters=(cache._hits, cache._misses, cache._evictions, cache._expirations),
        projection_sha256=bytes.fromhex(enc.fingerprint[3]), rescore=cache._rescore,
        rescore_k=cache._rescore_k)
    records, offsets, at = [F.RESPONSES_MAGIC], np.zeros(slots + 1, "<u8"), len(F.RESPONSES_MAGIC)
    live = idx.gen[:slots] % 2 == 1
    for s in range(slots):
        offsets[s] = at
        if live[s]:
            record = cache._responses.record(s, allow_pickle=allow_pickle, entry_id=cache._id(s))
            records.append(record)
            at += len(record)
    offsets[slots] = at
    layout, total = header.layout()
    parts, written = [header.pack()], F.HEADER_BYTES
    for name, (offset, dtype, shape) in layout.items():
        array = offsets if name == "resp_off" else getattr(idx, name)
        parts.append(b"\x00" * (offset - written))
        data = np.ascontiguousarray(array, dtype=dtype).tobytes()
        parts.append(data)
        written = offset + len(data)
    assert written == total
    return parts, records


def _prepare_directory(path):
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"cannot save into {path}: it is a file; pass a directory path")
    path.mkdir(parents=True, exist_ok=True)
    others = [p.name for p in path.iterdir() if not p.name.startswith(("data-", ".data-", "."))
              and p.name != MANIFEST]
    if others and not (path / MANIFEST).exists():
        raise FileExistsError(f"cannot save into {path}: it holds other files ({others[:3]}); "
                              "pass an empty or new directory")


def _write_synced(file, parts):
    digest, size = hashlib.sha256(), 0
    with open(file, "wb") as f:
        for part in parts:
            f.write(part)
            digest.update(part)
            size += len(part)
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": size, "sha256": digest.hexdigest()}


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- loading


def read_manifest(path):
    path = Path(path)
    file = path / MANIFEST
    if not file.exists():
        what = "no such directory" if not path.exists() else f"no {MANIFEST} in it"
        raise CacheFileNotFoundError(f"{path}: not a saved cache ({what}); save one with "
                                     "cache.save(path)")
    try:
        manifest = json.loads(file.read_bytes())
        data, files = manifest["data"], manifest["files"]
        version = manifest["version"]
        sizes = {name: int(files[name]["bytes"]) for name in FILES}
        sums = {name: str(files[name]["sha256"]) for name in FILES}
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptFileError(f"{file}: unreadable manifest ({type(exc).__name__}: {exc})") \
            from None
    if version != F.VERSION:
        raise FormatVersionError(f"{file}: format version {version!r}, this release reads "
                                 f"version {F.VERSION}; use the release that wrote it")
    if not isinstance(data, str) or "/" in data or "\\" in data or not data.startswith("data-"):
        raise CorruptFileError(f"{file}: data directory {data!r} is not a data-* name")
    return manifest, path / data, sizes, sums


def _check_file(file, size, digest, verify):
    if not file.exists():
        raise CacheFileNotFoundError(f"{file}: missing; the save is incomplete or was moved")
    actual = file.stat().st_size
    if actual != size:
        raise TruncatedFileError(f"{file}: truncated or extended: expected {size:,} bytes, "
                                 f"got {actual:,}")
    if verify:
        h = hashlib.sha256()
        with open(file, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        if h.hexdigest() != digest:
            raise ChecksumError(f"{file}: SHA-256 {h.hexdigest()[:16]}... does not match the "
                                f"manifest's {digest[:16]}...; the file was changed or damaged")


def _open(file, use_mmap, *, writable):
    """The file's bytes: a private copy-on-write mapping, or a copy in memory.

    Either way, writes to arrays viewed on it never reach the file.
    """
    if not use_mmap:
        return np.fromfile(file, dtype=np.uint8) if writable else file.read_bytes()
    with open(file, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap_module.mmap(f.fileno(), 0, access=mmap_module.ACCESS_COPY)


def load(cls, path, *, mmap=True, encoder=None, verify=True, allow_pickle=False,
         clock=time.time, parallel=None):
    manifest, data, sizes, sums = read_manifest(path)
    if manifest.get("pickle") and not allow_pickle:
        raise UnsafeResponseError(f"{path}: saved with allow_pickle=True; its responses include pickles, "
                         "which can run code when read. Load with allow_pickle=True only if you "
                         "trust whoever wrote the files")
    for name in FILES:
        _check_file(data / name, sizes[name], sums[name], verify)
    entries = _open(data / "entries.bin", mmap, writable=True)
    blob = _open(data / "responses.bin", mmap, writable=False)
    where = str(data / "entries.bin")
    header = F.unpack_header(bytes(memoryview(entries)[:F.HEADER_BYTES]), where)
    layout, total = header.layout()
    if len(entries) != total:
        raise TruncatedFileError(f"{where}: expected {total:,} bytes for {header.capacity:,} "
                                 f"slots, got {len(entries):,}")
    encoder = _encoder_for(header, encoder, where)
    arrays = {name: np.frombuffer(entries, dtype, int(np.prod(shape)), offset).reshape(shape)
              for name, (offset, dtype, shape) in layout.items()}
    offsets = arrays.pop("resp_off")
    if len(blob) < len(F.RESPONSES_MAGIC) or bytes(memoryview(blob)[:8]) != F.RESPONSES_MAGIC or (
            offsets.size and (offsets[0] != 8 or offsets[-1] != len(blob)
                              or np.any(offsets[1:] < offsets[:-1]))):
        raise CorruptFileError(f"{data / 'responses.bin'}: record offsets do not fit the file")
    _check_links(arrays, header, where)
    arrays["codes"].flags.writeable = False  # scanned in place; a put copies first
    index = Index.from_arrays(arrays, header.state)
    cache = cls(encoder, header.max_entries, header.threshold, ttl=header.ttl, clock=clock,
                parallel=parallel, rescore=header.rescore, rescore_k=header.rescore_k)
    cache._index = index
    cache._responses = Responses(index.capacity, blob, offsets, allow_pickle)
    cache._hits, cache._misses, cache._evictions, cache._expirations = header.counters
    return cache


def _check_links(arrays, header, where):
    """Every slot index the kernels will follow lies inside the arrays.

    Kernels run without bounds checks, so this holds even with verify=False:
    a damaged file may give wrong answers then, but cannot crash the process.
    """
    cap, heapn = header.capacity, header.state[K.HEAPN]
    bad = [name for name in ("prev", "nxt")
           if arrays[name].size and not -1 <= arrays[name].min() <= arrays[name].max() < cap]
    if header.has_expiry and heapn and not (
            0 <= arrays["heap"][:heapn].min() <= arrays["heap"][:heapn].max() < cap):
        bad.append("heap")
    if header.has_expiry and arrays["hpos"].size and not (
            -1 <= arrays["hpos"].min() <= arrays["hpos"].max() < max(heapn, 1)):
        bad.append("hpos")
    if bad:
        raise CorruptFileError(f"{where}: slot links outside 0..{cap - 1} in {', '.join(bad)}")


def _encoder_for(header, encoder, where):
    saved = (header.embedding_dim, header.code_bits, header.seed, header.projection_sha256.hex())
    if encoder is None:
        encoder = BinaryEncoder(header.embedding_dim, header.code_bits, header.seed)
    if encoder.fingerprint != saved:
        names = ("embedding_dim", "code_bits", "seed", "projection sha256")
        diff = [f"{n} {a!r} != saved {b!r}" for n, a, b in zip(names, encoder.fingerprint, saved)
                if a != b]
        raise EncoderMismatchError(f"{where}: the codes were made by another encoder ("
                                   + "; ".join(diff) + "); load with the encoder that saved "
                                   "them, or rebuild the cache from the source embeddings")
    return encoder


def inspect(path, *, verify=True):
    """A dict describing a saved cache; checksums are checked when ``verify``."""
    manifest, data, sizes, sums = read_manifest(path)
    for name in FILES:
        _check_file(data / name, sizes[name], sums[name], verify)
    with open(data / "entries.bin", "rb") as f:
        header = F.unpack_header(f.read(F.HEADER_BYTES), str(data / "entries.bin"))
    return {
        "path": str(Path(path)), "format_version": F.VERSION, "data": data.name,
        "encoder": {"embedding_dim": header.embedding_dim, "code_bits": header.code_bits,
                    "seed": header.seed, "projection_sha256": header.projection_sha256.hex()},
        "entries": header.count, "slots": header.slots, "capacity": header.max_entries,
        "threshold": header.threshold, "ttl": header.ttl, "pickle": bool(manifest.get("pickle")),
        "bytes_on_disk": sum(sizes.values()) + (Path(path) / MANIFEST).stat().st_size,
        "files": manifest["files"], "checksums": "verified" if verify else "not checked",
    }

