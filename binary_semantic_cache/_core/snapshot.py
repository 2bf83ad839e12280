"""A cache's whole state, as persistence reads it out and builds a cache back from it."""

from dataclasses import dataclass

from ..encoder import BinaryEncoder
from .index import Index
from .responses import Responses


@dataclass(frozen=True)
class Snapshot:
    """Settings, counters and arrays of one cache: what a save holds."""

    encoder: BinaryEncoder
    max_entries: int
    threshold: float
    ttl: float | None
    rescore: str | None
    rescore_k: int
    counters: tuple  # hits, misses, evictions, expirations, exact hits
    index: Index
    responses: Responses
    keys: Responses  # the exact key of each keyed slot
    names: list  # namespace name by id: None for the default, spaces.FREE for a free id
    salt: bytes  # of the key hashes
