"""Namespace names and their ids in the index, and the hashing of exact keys."""

import hashlib

import numpy as np

#: Least namespace ids allotted before empty ones are looked for and freed.
_SWEEP_MIN = 1024
#: The name of a free id.
FREE = object()


def key_home(record, salt, buckets):
    """The hash of a key's tagged bytes as the key table takes it: its home bucket in a
    table of ``buckets`` in the low 32 bits, 31 more bits (for the bucket's tag) above,
    so it fits an int64.

    BLAKE2b keyed with the cache's own random ``salt`` (saved with it): the
    same key finds the same bucket in every process that loads the cache,
    while nobody who lacks the salt can pick keys that crowd one run.
    """
    h = int.from_bytes(hashlib.blake2b(record, digest_size=8, key=salt).digest(), "little")
    return ((h & 0xFFFFFFFF) * buckets) >> 32 | (h >> 32 & 0x7FFFFFFF) << 32


def stored_key_record(key):
    """The tagged bytes of a key as ``validate.key`` makes them, for a key already stored."""
    return (b"s" + key.encode("utf-8", "surrogatepass")) if type(key) is str else b"b" + key


class Namespaces:
    """Which id in the index each namespace name has; the default namespace ``None`` is 0.

    An id stays with its name while the namespace holds entries. Ids of
    namespaces found empty are freed in a sweep, run when the ids allotted
    double, so a stream of short-lived namespaces keeps the table small.
    """

    __slots__ = ("names", "ids", "free", "_sweep_at")

    def __init__(self, names=None):
        self.names = [None] if names is None else list(names)  # by id
        self.ids = {name: i for i, name in enumerate(self.names) if name is not FREE}
        self.free = [i for i, name in enumerate(self.names) if name is FREE]
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self.ids))

    def find(self, name):
        """The id of ``name``, or -1 when no entry was ever put there."""
        return self.ids.get(name, -1)

    def add(self, name):
        """The id of ``name``, allotted when it has none."""
        x = self.ids.get(name, -1)
        if x >= 0:
            return x
        if self.free:
            x = self.free.pop()
            self.names[x] = name
        else:
            x = len(self.names)
            self.names.append(name)
        self.ids[name] = x
        return x

    def due(self):
        return len(self.ids) >= self._sweep_at

    def sweep(self, counts):
        """Free the id of every namespace other than the default with no live entry."""
        for x in np.flatnonzero(counts[:len(self.names)] == 0).tolist():
            name = self.names[x]
            if x and name is not FREE:
                del self.ids[name]
                self.names[x] = FREE
                self.free.append(x)
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self.ids))

    def live(self, counts):
        """``{name: live entries}`` of every namespace that holds any."""
        return {self.names[x]: int(counts[x]) for x in np.flatnonzero(counts).tolist()
                if x < len(self.names)}
