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
        Hits this entry has served.
    """

    id: int
    response: Any
    similarity: float
    created_at: float
    last_accessed: float
    access_count: int

    def __repr__(self):
        text = repr(self.response)
        if len(text) > 60:
            text = text[:57] + "..."
        return (f"CacheEntry(id={self.id}, similarity={self.similarity:.3f}, response={text}, "
                f"access_count={self.access_count})")


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters and sizes of a cache at one moment.

    Attributes
    ----------
    size, max_size : int
        Live entries, and the capacity before LRU eviction.
    hits, misses : int
        Lookups (``get``/``get_batch``) that returned an entry, or did not.
    evictions : int
        Entries removed to make room (least recently used).
    memory_bytes : int
        Bytes held by the index arrays (codes and metadata), responses aside.
    hit_rate : float
        ``hits / (hits + misses)``, 0.0 before the first lookup.
    expirations : int
        Entries removed because their time to live ran out.
    """

    size: int
    max_size: int
    hits: int
    misses: int
    evictions: int
    memory_bytes: int
    hit_rate: float
    expirations: int = 0
