"""Entries as bytes: what Redis holds and what the change log carries.

An entry's blob is a fixed header and five byte strings::

    <B version> <B flags> <I code bytes> <I namespace bytes> <I key bytes> <I vector bytes>
    code | namespace (UTF-8) | key (UTF-8 or raw) | rescoring vector (float32) | response

flags: 1 the namespace is not the default one, 2 keyed, 4 the key is bytes,
8 key only (no code to scan). The response is a tagged record of
``_core.responses`` (str, bytes or exact JSON; never a pickle). Times are kept
beside the blob, in Redis's clock: ``t`` (stored at) and ``x`` (expires, or empty).
"""

import struct
from typing import NamedTuple

import numpy as np

from .._core.responses import decode, encode

VERSION = 1
_HEAD = struct.Struct("<BBIIII")
NAMED, KEYED, BYTES_KEY, KEY_ONLY = 1, 2, 4, 8


class Entry(NamedTuple):
    code: np.ndarray  # (n_words,) uint64
    namespace: str | None
    key: str | bytes | None
    key_only: bool
    vector: np.ndarray | None  # float32 copy for rescoring, or None
    response: object


class MalformedRecord(ValueError):
    """A blob or log record this version cannot read."""


def pack(code, namespace, key, key_only, vector, response):
    flags = (NAMED if namespace is not None else 0) | (KEYED if key is not None else 0)
    if isinstance(key, bytes):
        flags |= BYTES_KEY
        key_bytes = key
    else:
        key_bytes = b"" if key is None else key.encode("utf-8", "surrogatepass")
    if key_only:
        flags |= KEY_ONLY
    code_bytes = np.ascontiguousarray(code, dtype="<u8").tobytes()
    ns_bytes = b"" if namespace is None else namespace.encode("utf-8", "surrogatepass")
    vec_bytes = b"" if vector is None else np.ascontiguousarray(vector, "<f4").tobytes()
    return b"".join((_HEAD.pack(VERSION, flags, len(code_bytes), len(ns_bytes), len(key_bytes),
                                len(vec_bytes)), code_bytes, ns_bytes, key_bytes, vec_bytes,
                     encode(response, allow_pickle=False)))


def unpack(blob, n_words):
    """The :class:`Entry` of a blob, or :class:`MalformedRecord` saying what is wrong."""
    if not isinstance(blob, bytes) or len(blob) < _HEAD.size:
        raise MalformedRecord(f"an entry blob of {len(blob or b'')} bytes, shorter than its "
                              f"{_HEAD.size}-byte header")
    version, flags, nc, nn, nk, nv = _HEAD.unpack_from(blob)
    if version != VERSION:
        raise MalformedRecord(f"entry blob version {version}; this release reads {VERSION}")
    if nc != 8 * n_words:
        raise MalformedRecord(f"a code of {nc} bytes where the encoder makes {8 * n_words}")
    at = _HEAD.size
    end = at + nc + nn + nk + nv
    if end > len(blob):
        raise MalformedRecord(f"an entry blob of {len(blob)} bytes whose header names {end}")
    code = np.frombuffer(blob, "<u8", n_words, at).astype(np.uint64)
    at += nc
    try:
        namespace = blob[at:at + nn].decode("utf-8", "surrogatepass") if flags & NAMED else None
        at += nn
        raw = blob[at:at + nk]
        key = (raw if flags & BYTES_KEY else raw.decode("utf-8", "surrogatepass")) \
            if flags & KEYED else None
        at += nk
        vector = np.frombuffer(blob, "<f4", nv // 4, at).astype(np.float32) if nv else None
        at += nv
        response = decode(blob[at:], allow_pickle=False)
    except (UnicodeDecodeError, ValueError) as err:
        raise MalformedRecord(f"an unreadable entry blob: {err}") from None
    except Exception as err:  # noqa: BLE001  (a response record that does not decode)
        raise MalformedRecord(f"an unreadable response in an entry blob: {err!r}") from None
    return Entry(code, namespace, key, bool(flags & KEY_ONLY), vector, response)


def namespace_field(namespace):
    """The name of a namespace in Redis: ``d`` for the default, ``n:NAME`` for others."""
    return "d" if namespace is None else "n:" + namespace


def key_field(namespace, key):
    """The field of ``(namespace, key)`` in the key index, or "" for no key."""
    if key is None:
        return ""
    tag = "b:" + key.hex() if isinstance(key, bytes) else "s:" + key
    return namespace_field(namespace) + "\x00" + tag


def stream_id(value):
    """A stream id (``b"1700000000000-3"`` or str) as a comparable ``(ms, seq)`` tuple."""
    if isinstance(value, bytes):
        value = value.decode()
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)
