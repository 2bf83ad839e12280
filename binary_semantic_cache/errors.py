"""Exceptions raised by binary_semantic_cache.

Every error the library raises on purpose derives from :class:`CacheError`,
except bad arguments, which raise the built-in ``ValueError``/``TypeError``::

    CacheError
    ├── CorruptFileError
    │   └── ChecksumError
    ├── FormatVersionError
    ├── EncoderMismatchError
    └── BackendError
"""


class CacheError(Exception):
    """Base class of every error raised by binary_semantic_cache."""


class CorruptFileError(CacheError):
    """A saved cache file is missing, truncated or malformed."""


class ChecksumError(CorruptFileError):
    """A saved cache file does not match the checksum recorded with it."""


class FormatVersionError(CacheError):
    """A saved cache was written in a format version this release cannot read."""


class EncoderMismatchError(CacheError):
    """An encoder differs from the one the cache's codes were made with."""


class BackendError(CacheError):
    """An embedding backend failed to return embeddings."""
