"""Responses on disk without pickle: a tagged record per slot, decoded lazily.

A record is one tag byte and a payload:

===  ==========================================================
tag  payload
===  ==========================================================
s    UTF-8 text (a ``str`` response)
b    raw bytes (a ``bytes`` response)
j    UTF-8 JSON (``None``, bool, int, float, and lists and dicts
     of those with ``str`` keys: the values JSON gives back exactly)
p    a pickle, written and read only with ``allow_pickle=True``
===  ==========================================================

A free slot has an empty record.
"""

import json
import math
import pickle

from ..errors import CorruptFileError, UnsafeResponseError

_ON_DISK = object()  # a slot whose response is still only in the file


def _exact_json(value, depth=0):
    """True if ``json.loads(json.dumps(value)) == value`` with the same types."""
    if depth > 200:
        return False
    if value is None or isinstance(value, (bool, str)):
        return True
    if type(value) is int:
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(_exact_json(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _exact_json(v, depth + 1) for k, v in value.items())
    return False


def encode(value, *, allow_pickle, entry_id=None):
    if type(value) is str:
        return b"s" + value.encode("utf-8", "surrogatepass")
    if type(value) is bytes:
        return b"b" + value
    if _exact_json(value):
        return b"j" + json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    if allow_pickle:
        return b"p" + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    where = "" if entry_id is None else f" (entry id {entry_id})"
    raise UnsafeResponseError(
        f"expected a response that is str, bytes or exact JSON (None, bool, int, finite float, "
        f"and lists/dicts of those with str keys), got {type(value).__name__}{where}; convert "
        "it (e.g. to a dict or str) or pass allow_pickle=True to save() and to load() if you "
        "trust every process that can write the files")


def decode(record, *, allow_pickle, slot=None):
    tag, payload = record[:1], record[1:]
    try:
        if tag == b"s":
            return bytes(payload).decode("utf-8", "surrogatepass")
        if tag == b"b":
            return bytes(payload)
        if tag == b"j":
            return json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(f"response of slot {slot} is not valid {tag.decode()} data "
                               f"({str(exc)[:200]}); the response store is damaged") from None
    except RecursionError:
        raise CorruptFileError(f"response of slot {slot} is JSON nested too deeply to read; "
                               "the response store is damaged or was written by hand") from None
    if tag == b"p":
        if not allow_pickle:
            raise UnsafeResponseError(
                f"the response of slot {slot} is a pickle, which can run code when read; "
                "load with allow_pickle=True only if you trust whoever wrote the files")
        return pickle.loads(payload)
    raise CorruptFileError(f"response of slot {slot} has unknown tag {tag!r}; the response "
                           "store is damaged")


class Responses:
    """The response of each slot: Python objects, some still encoded on disk.

    Behaves like a list indexed by slot. Slots loaded from a file hold a
    marker until first read, so a large cache opens without decoding them.
    """

    __slots__ = ("_items", "_blob", "_offsets", "_allow_pickle")

    def __init__(self, capacity, blob=None, offsets=None, allow_pickle=False):
        self._items = [None if offsets is None else _ON_DISK] * capacity
        self._blob, self._offsets, self._allow_pickle = blob, offsets, allow_pickle

    def __getitem__(self, slot):
        value = self._items[slot]
        if value is _ON_DISK:
            raw = self._record(slot)  # empty for a slot that was free when saved
            value = decode(raw, allow_pickle=self._allow_pickle, slot=slot) if len(raw) else None
            self._items[slot] = value
        return value

    def __setitem__(self, slot, value):
        self._items[slot] = value

    def grow(self, capacity):
        self._items.extend([None] * (capacity - len(self._items)))

    def _record(self, slot):
        return self._blob[int(self._offsets[slot]):int(self._offsets[slot + 1])]

    def record(self, slot, *, allow_pickle, entry_id=None):
        """The encoded record of a live slot, copied from disk when never decoded."""
        if self._items[slot] is _ON_DISK:
            raw = bytes(self._record(slot))
            if raw[:1] == b"p" and not allow_pickle:
                raise UnsafeResponseError(
                    f"entry id {entry_id} holds a pickled response; save with "
                    "allow_pickle=True to keep it")
            return raw
        return encode(self._items[slot], allow_pickle=allow_pickle, entry_id=entry_id)


class Keys(Responses):
    """The exact key of each keyed slot: like ``Responses``, but only str or bytes."""

    __slots__ = ()

    def __getitem__(self, slot):
        value = self._items[slot]
        if value is not _ON_DISK:
            return value  # put by this process: checked at the door
        value = Responses.__getitem__(self, slot)
        if value is not None and type(value) not in (str, bytes):
            raise CorruptFileError(f"the key of slot {slot} is a {type(value).__name__}, not "
                                   "str or bytes; the key store is damaged")
        return value
