"""Saving and loading caches: atomic, checksummed, memory-mapped.

A saved cache is a directory::

    PATH/manifest.json          which data directory is current, with sizes and SHA-256s
    PATH/data-<token>/entries.bin     header + index arrays (docs/file-format.md)
    PATH/data-<token>/responses.bin   one tagged record per slot
    PATH/.bsc-lock, .bsc-journal      the save lock, and what our saves created

A save writes a new data directory beside the current one, flushes it to disk,
then replaces ``manifest.json`` with one atomic rename. Until that rename the
old manifest names the old, complete data; after it, the new. Saves to one
path take turns (``_savedir``); a load that finds the data it was sent to gone
has lost a race with a save and reads the new manifest.
"""

import json
import math
import os
import re
import secrets
import time
from pathlib import Path

import numpy as np

from .. import _kernels as K
from .._core.index import NAMESPACE_ARRAYS, Index, entry_id
from .._core.responses import Keys, Responses
from .._core.snapshot import Snapshot
from .._core.spaces import FREE
from ..encoder import BinaryEncoder
from ..errors import (
    CacheError,
    CacheFileNotFoundError,
    CacheIOError,
    ChecksumError,
    CorruptFileError,
    EncoderMismatchError,
    FormatVersionError,
    TruncatedFileError,
    UnsafeResponseError,
)
from . import files as fs
from . import format as F
from .savedir import DATA_NAME, FORMAT, MANIFEST, SaveDirectory, read_manifest_bytes

FILES = ("entries.bin", "responses.bin")
# A load re-reads the manifest this many times when a save replaces the data under it.
_LOAD_TRIES = 20
# Largest hyperplane matrix (bytes of float32) a load builds from a header on its own.
_MAX_PLANES_BYTES = 1 << 28  # 16,384-d embeddings at 4,096 bits
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


def save(cache, path, *, allow_pickle=False):
    path = Path(path)
    with cache._snapshot() as snapshot:
        entries, responses = _serialise(snapshot, allow_pickle)
    try:
        with SaveDirectory(path) as directory:
            _commit(directory, entries, responses, allow_pickle)
    except CacheError:
        raise
    except OSError as exc:
        raise CacheIOError(exc.errno, f"cannot save into {path}: {exc.strerror or exc}; the "
                           "previous save there, if any, is intact") from exc


def _commit(directory, entries, responses, allow_pickle):
    """Write a new data directory and switch the manifest to it; the lock is held."""
    path = directory.path
    token = f"{time.time_ns():x}-{secrets.token_hex(4)}"
    staging, final, tmp = f".data-{token}.tmp", f"data-{token}", f".{MANIFEST}.{token}.tmp"
    directory.record({staging, final, tmp})
    committed = False
    try:
        (path / staging).mkdir()
        digests = {}
        for name, parts in (("entries.bin", entries), ("responses.bin", responses)):
            digests[name] = fs.write_synced(path / staging / name, parts)
        fs.fsync_dir(path / staging)
        os.replace(path / staging, path / final)
        fs.fsync_dir(path)
        manifest = {"format": FORMAT, "version": F.VERSION, "data": final,
                    "pickle": allow_pickle, "files": digests}
        fs.write_synced(path / tmp, [json.dumps(manifest, indent=2).encode()])
        os.replace(path / tmp, path / MANIFEST)
        committed = True
        fs.fsync_dir(path)
    except BaseException:
        # Keep whatever a manifest may name; remove the rest of this save.
        try:
            directory.tidy(keep={directory.previous, final} if committed else
                           {directory.previous})
        except OSError:
            pass  # the journal still lists it: the next save removes it
        raise
    try:
        directory.tidy(keep={final})
    except OSError:
        pass  # saved; what is left over stays in the journal for the next save


def _serialise(snapshot, allow_pickle):
    """The two files' contents as lists of byte strings, while the snapshot holds still."""
    idx, enc = snapshot.index, snapshot.encoder
    slots = idx.high_water
    members = idx.seg[0]
    header = F.Header(
        code_bits=enc.code_bits, n_words=enc.n_words, embedding_dim=enc.embedding_dim,
        has_expiry=idx.has_expiry, seed=enc.seed, count=idx.size, slots=slots,
        capacity=idx.capacity, max_entries=snapshot.max_entries, threshold=snapshot.threshold,
        ttl=snapshot.ttl, state=tuple(int(v) for v in idx.state), counters=snapshot.counters,
        projection_sha256=bytes.fromhex(enc.fingerprint[3]), rescore=snapshot.rescore,
        rescore_k=snapshot.rescore_k, has_keys=idx.has_keys, key_buckets=idx.kslot.shape[0],
        namespaces=idx.namespace_slots, arena=members.shape[0], salt=snapshot.salt)
    records, at = [F.RESPONSES_MAGIC], len(F.RESPONSES_MAGIC)
    live = (idx.gen[:slots] % 2 == 1).tolist()
    keyed = (idx.apos[:slots] & K.KEYED != 0).tolist()
    offsets = {name: np.zeros(n + 1, "<u8") for name, n in (
        ("resp_off", slots), ("key_off", slots), ("name_off", header.namespaces))}
    for s in range(slots):
        offsets["resp_off"][s] = at
        if live[s]:
            record = snapshot.responses.record(s, allow_pickle=allow_pickle,
                                               entry_id=entry_id(idx.gen[s], s))
            records.append(record)
            at += len(record)
    offsets["resp_off"][slots] = at
    for s in range(slots):
        offsets["key_off"][s] = at
        if live[s] and keyed[s]:
            record = snapshot.keys.record(s, allow_pickle=False)
            records.append(record)
            at += len(record)
    offsets["key_off"][slots] = at
    names = snapshot.names
    for x in range(header.namespaces):
        offsets["name_off"][x] = at
        name = names[x] if x < len(names) else FREE
        if x and name is not FREE:
            records.append(b"s" + name.encode("utf-8", "surrogatepass"))
            at += len(records[-1])
    offsets["name_off"][header.namespaces] = at
    layout, total = header.layout()
    arrays = dict(offsets, members=members, **dict(zip(NAMESPACE_ARRAYS, idx.seg[1:])))
    parts, written = [header.pack()], F.HEADER_BYTES
    for name, (offset, dtype, shape) in layout.items():
        array = arrays[name] if name in arrays else getattr(idx, name)
        parts.append(b"\x00" * (offset - written))
        data = np.ascontiguousarray(array, dtype=dtype).tobytes()
        parts.append(data)
        written = offset + len(data)
    assert written == total
    return parts, records


# ---------------------------------------------------------------- loading


class Manifest:
    """What ``manifest.json`` says, checked field by field."""

    __slots__ = ("data", "sizes", "sums", "pickle")

    def __init__(self, raw, file):
        try:
            manifest = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise CorruptFileError(f"{file}: unreadable manifest ({type(exc).__name__}: "
                                   f"{str(exc)[:200]})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise CorruptFileError(f"{file}: not a binary_semantic_cache manifest (expected "
                                   f"\"format\": \"{FORMAT}\")")
        version = manifest.get("version")
        if type(version) is not int or version not in F.READABLE:
            raise FormatVersionError(f"{file}: format version {version!r}, this release reads "
                                     f"versions {F.READABLE}; use the release that wrote it")
        data, files, pickled = manifest.get("data"), manifest.get("files"), manifest.get("pickle")
        if not isinstance(data, str) or not DATA_NAME.match(data):
            raise CorruptFileError(f"{file}: data directory {str(data)[:80]!r} is not a "
                                   "data-<token> name")
        if not isinstance(files, dict) or not isinstance(pickled, (bool, type(None))):
            raise CorruptFileError(f"{file}: expected \"files\" as an object and \"pickle\" "
                                   "as true or false")
        self.data, self.pickle, self.sizes, self.sums = data, bool(pickled), {}, {}
        for name in FILES:
            entry = files.get(name)
            size = entry.get("bytes") if isinstance(entry, dict) else None
            digest = entry.get("sha256") if isinstance(entry, dict) else None
            if type(size) is not int or not 0 <= size < 1 << 48 or not isinstance(
                    digest, str) or not _SHA256.match(digest):
                raise CorruptFileError(f"{file}: expected {name} with a byte count and a "
                                       f"SHA-256, got {str(entry)[:120]}")
            self.sizes[name], self.sums[name] = size, digest


def read_manifest(path):
    path = Path(path)
    if not os.path.lexists(path / MANIFEST):
        what = "no such directory" if not path.exists() else f"no {MANIFEST} in it"
        raise CacheFileNotFoundError(f"{path}: not a saved cache ({what}); save one with "
                                     "cache.save(path)")
    return Manifest(read_manifest_bytes(path), path / MANIFEST)


def _read_data(path, manifest, use_mmap, verify):
    """The bytes of both data files: private mappings, or copies in memory.

    Each file is opened once, must be a regular file of exactly the size the
    manifest records, and is never read past it.
    """
    data = path / manifest.data
    fs.check_directory(data)
    out = []
    for name in FILES:
        file, size = data / name, manifest.sizes[name]
        fd, actual = fs.open_regular(file)
        try:
            if actual != size:
                raise TruncatedFileError(f"{file}: truncated or extended: expected {size:,} "
                                         f"bytes, got {actual:,}")
            buffer = (fs.map_private(fd, size) if use_mmap
                      else fs.read_exactly(fd, size, file))
        finally:
            os.close(fd)
        if verify and (digest := fs.sha256(buffer)) != manifest.sums[name]:
            raise ChecksumError(f"{file}: SHA-256 {digest[:16]}... does not match the "
                                f"manifest's {manifest.sums[name][:16]}...; the file was "
                                "changed or damaged")
        out.append(buffer)
    return data, out


def _read_save(path, use_mmap, verify):
    """The manifest and both files of the save ``path`` names now.

    A save that lands between reading the manifest and opening the files
    removes the data the manifest named; the manifest then names newer data,
    so read again.
    """
    for attempt in range(_LOAD_TRIES):
        manifest = read_manifest(path)
        try:
            return manifest, *_read_data(path, manifest, use_mmap, verify)
        except CacheFileNotFoundError:
            if attempt + 1 == _LOAD_TRIES or _still_current(path, manifest):
                raise


def _still_current(path, manifest):
    try:
        return read_manifest(path).data == manifest.data
    except CacheError:
        return True


def load(cls, path, *, mmap=True, encoder=None, verify=True, allow_pickle=False,
         clock=time.time, parallel=None):
    if encoder is not None and not isinstance(encoder, BinaryEncoder):
        raise TypeError(f"expected encoder as a BinaryEncoder or None, got "
                        f"{type(encoder).__name__}")
    path = Path(path)
    try:
        manifest, data, (entries, blob) = _read_save(path, mmap, verify)
        if manifest.pickle and not allow_pickle:
            raise UnsafeResponseError(
                f"{path}: saved with allow_pickle=True; its responses include pickles, which "
                "can run code when read. Load with allow_pickle=True only if you trust whoever "
                "wrote the files")
        header, encoder, index, offsets = _parse(data, entries, blob, encoder, mmap)
    except CacheError:
        raise
    except OSError as exc:
        raise CacheIOError(exc.errno, f"{path}: cannot read the saved cache "
                           f"({exc.strerror or exc})") from exc
    except (ValueError, OverflowError, RecursionError, MemoryError) as exc:
        # Every known problem is named above; this keeps the promise for any other.
        raise CorruptFileError(f"{path}: cannot load the saved cache ({type(exc).__name__}: "
                               f"{str(exc)[:200]})") from exc
    offsets, key_offsets, names = offsets
    snapshot = Snapshot(encoder, header.max_entries, header.threshold, header.ttl,
                        header.rescore, header.rescore_k, header.counters, index,
                        Responses(index.capacity, blob, offsets, allow_pickle),
                        Keys(index.capacity, blob, key_offsets), names,
                        header.salt if header.version > 1 else os.urandom(16))
    # Outside the net: a bad clock or parallel is the caller's error, not the file's.
    return cls._from_snapshot(snapshot, clock=clock, parallel=parallel,
                              mappings=[entries, blob] if mmap else [])


def _parse(data, entries, blob, encoder, mapped):
    """The header, encoder, index and response offsets of a save's bytes, all checked."""
    where = str(data / "entries.bin")
    header = F.unpack_header(bytes(memoryview(entries)[:F.HEADER_BYTES]), where)
    layout, total = header.layout()
    if len(entries) != total:
        raise TruncatedFileError(f"{where}: expected {total:,} bytes for {header.capacity:,} "
                                 f"slots, got {len(entries):,}")
    encoder = _encoder_for(header, encoder, where)
    arrays = {name: np.frombuffer(entries, dtype, math.prod(shape), offset).reshape(shape)
              for name, (offset, dtype, shape) in layout.items()}
    offsets = arrays.pop("resp_off")
    key_offsets = arrays.pop("key_off", np.full(offsets.shape, offsets[-1], offsets.dtype))
    name_offsets = arrays.pop("name_off", np.full(2, offsets[-1], offsets.dtype))
    every = np.concatenate([offsets, key_offsets, name_offsets])
    if len(blob) < len(F.RESPONSES_MAGIC) or bytes(memoryview(blob)[:8]) != F.RESPONSES_MAGIC or (
            every[0] != 8 or every[-1] != len(blob) or np.any(every[1:] < every[:-1])):
        raise CorruptFileError(f"{data / 'responses.bin'}: record offsets do not fit the file")
    if header.version == 1:
        index = Index.upgraded(arrays, header.state, mapped=mapped)
    else:
        index = Index.from_arrays(arrays, header.state, mapped=mapped)
    # Kernels run without bounds checks: this one O(n) pass, made even with
    # verify=False, is what keeps a damaged file from crashing the process or
    # hanging it in a cycle. It can then give wrong answers at worst.
    problem, slot = index.check()
    if problem:
        raise CorruptFileError(f"{where}: {_SLOT_PROBLEMS[problem]} is inconsistent at slot "
                               f"{slot}; the file is damaged")
    names = _names(blob, name_offsets, index, where)
    return header, encoder, index, (offsets, key_offsets, names)


def _names(blob, offsets, index, where):
    """Namespace name of each id: None for the default, ``FREE`` for an unused id."""
    names = [None]
    for x in range(1, len(offsets) - 1):
        raw = bytes(memoryview(blob)[int(offsets[x]):int(offsets[x + 1])])
        if not raw:
            names.append(FREE)
        elif raw[:1] == b"s":
            names.append(raw[1:].decode("utf-8", "surrogatepass"))
        else:
            raise CorruptFileError(f"{where}: the name of namespace {x} has tag {raw[:1]!r}")
    counts = index.counts()
    taken = [name for name in names if name is not FREE]
    if len(set(taken)) != len(taken) or any(
            names[x] is FREE for x in np.flatnonzero(counts).tolist()):
        raise CorruptFileError(f"{where}: the namespace names repeat, or a namespace holding "
                               "entries has none; the file is damaged")
    return names


_SLOT_PROBLEMS = {
    K.BAD_RECENCY: "the recency list (prev/nxt from the head)",
    K.BAD_FREE: "the free list",
    K.BAD_HEAP: "the expiry heap (heap/hpos/exp)",
    K.BAD_NORM: "the norms of the stored int8 vectors",
    K.BAD_NAMESPACE: "the namespace segments (apos/members/nstart/nlen/ncap)",
    K.BAD_KEYS: "the exact-key table (kslot/kdisp)",
}


def _encoder_for(header, encoder, where):
    saved = (header.embedding_dim, header.code_bits, header.seed, header.projection_sha256.hex())
    if encoder is None:
        planes = 4 * header.embedding_dim * header.code_bits
        if planes > _MAX_PLANES_BYTES:
            raise CorruptFileError(
                f"{where}: the header asks for an encoder of embedding_dim="
                f"{header.embedding_dim:,} and {header.code_bits:,} bits, whose hyperplanes "
                f"take {planes:,} bytes (at most {_MAX_PLANES_BYTES:,} are built from a "
                "header); if that encoder is real, build it and pass encoder=")
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
    path = Path(path)
    manifest, data, (entries, _) = _read_save(path, True, verify)
    header = F.unpack_header(bytes(memoryview(entries)[:F.HEADER_BYTES]),
                             str(data / "entries.bin"))
    files = {name: {"bytes": manifest.sizes[name], "sha256": manifest.sums[name]}
             for name in FILES}
    return {
        "path": str(path), "format_version": header.version, "data": data.name,
        "encoder": {"embedding_dim": header.embedding_dim, "code_bits": header.code_bits,
                    "seed": header.seed, "projection_sha256": header.projection_sha256.hex()},
        "entries": header.count, "slots": header.slots, "capacity": header.max_entries,
        "threshold": header.threshold, "ttl": header.ttl, "rescore": header.rescore,
        "rescore_k": header.rescore_k, "pickle": manifest.pickle,
        "namespace_ids": header.namespaces, "exact_keys": header.has_keys,
        "bytes_on_disk": sum(manifest.sizes.values()) + (path / MANIFEST).stat().st_size,
        "files": files, "checksums": "verified" if verify else "not checked",
    }
