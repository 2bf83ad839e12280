"""Small immutable records returned by the cache."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached response, as seen by a lookup.

    Attributes
    ----------
    id : int
        Stable handle of the entry, valid until it is deleted, evicted or expires.
    response : Any
        The cached response, as stored.
    similarity : float
        Estimated cosine between the query and the entry's embedding,
        ``cos(pi * hamming / code_bits)``.
    created_at, last_accessed : float
        Epoch seconds (from the cache's clock) of the put and the latest use.
    access_count : int
        Hits this entry has served (a replace by key counts too).
    namespace : str or None
        The entry's namespace; None is the default one.
    key : str, bytes or None
        The exact key it was put with, as given, or None.
    """

    id: int
    response: Any
    similarity: float
    created_at: float
    last_accessed: float
    access_count: int
    namespace: str | None = None
    key: str | bytes | None = None

    def __repr__(self):
        text = repr(self.response)
        if len(text) > 60:
            text = text[:57] + "..."
        where = "" if self.namespace is None else f", namespace={self.namespace!r}"
        return (f"CacheEntry(id={self.id}, similarity={self.similarity:.3f}, response={text}, "
                f"access_count={self.access_count}{where})")


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters and sizes of a cache at one moment.

    Attributes
    ----------
    size, max_size : int
        Live entries, and the capacity before LRU eviction.
    hits, misses : int
        Lookups (``get``, ``get_batch``, ``get_exact``) that returned an entry, or did not.
    evictions : int
        Entries removed to make room (least recently used).
    memory_bytes : int
        Bytes held by the index arrays (codes, metadata, namespace segments and key
        table), responses, keys and namespace names aside.
    hit_rate : float
        ``hits / (hits + misses)``, 0.0 before the first lookup.
    expirations : int
        Entries removed because their time to live ran out.
    exact_hits : int
        The hits that ``get_exact`` served (counted in ``hits`` too).
    """

    size: int
    max_size: int
    hits: int
    misses: int
    evictions: int
    memory_bytes: int
    hit_rate: float
    expirations: int = 0
    exact_hits: int = 0
