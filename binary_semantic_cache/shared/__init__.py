"""One cache shared by processes and machines on Redis, with lookups kept local (``[redis]``).

See docs/shared.md.
"""

from .cache import SharedCacheStats, SharedSemanticCache

__all__ = ["SharedCacheStats", "SharedSemanticCache"]
