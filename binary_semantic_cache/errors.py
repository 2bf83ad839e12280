"""Exceptions raised by binary_semantic_cache.

Every error the library raises on purpose derives from :class:`CacheError`,
except bad arguments, which raise the built-in ``ValueError``/``TypeError``::

    CacheError
    ├── CacheIOError           (also an OSError)
    ├── ForeignDirectoryError  (also a FileExistsError)
    ├── CacheClosedError
    ├── CorruptFileError
    │   ├── CacheFileNotFoundError   (also a FileNotFoundError)
    │   ├── TruncatedFileError
    │   └── ChecksumError
    ├── FormatVersionError
    │   └── ByteOrderError
    ├── EncoderMismatchError
    ├── UnsafeResponseError
    ├── MissingExtraError      (also an ImportError)
    ├── SharedStateError       (Redis unreachable when a shared cache starts)
    └── BackendError
        ├── BackendAuthError
        ├── BackendRateLimitError
        └── BackendConnectionError
"""


class CacheError(Exception):
    """Base class of every error raised by binary_semantic_cache."""


class CacheIOError(CacheError, OSError):
    """The operating system refused to read or write a saved cache (permissions, full disk)."""


class ForeignDirectoryError(CacheError, FileExistsError):
    """A save would overwrite or delete files that binary_semantic_cache did not write."""


class CacheClosedError(CacheError):
    """The cache was closed; its arrays and mappings are released."""


class CorruptFileError(CacheError):
    """A saved cache file is missing, truncated or malformed."""


class CacheFileNotFoundError(CorruptFileError, FileNotFoundError):
    """A file a saved cache needs is missing."""


class TruncatedFileError(CorruptFileError):
    """A saved cache file is shorter (or longer) than its header says."""


class ChecksumError(CorruptFileError):
    """A saved cache file does not match the checksum recorded with it."""


class FormatVersionError(CacheError):
    """A saved cache was written in a format version this release cannot read."""


class ByteOrderError(FormatVersionError):
    """A saved cache was written with a byte order this reader does not use."""


class EncoderMismatchError(CacheError):
    """An encoder differs from the one the cache's codes were made with."""


class UnsafeResponseError(CacheError, TypeError):
    """A response can be saved or loaded only through pickle, which was not allowed."""


class BackendError(CacheError):
    """An embedding backend failed to return embeddings."""


class BackendAuthError(BackendError):
    """The embedding service refused the credentials (HTTP 401/403, or no key)."""


class BackendRateLimitError(BackendError):
    """The embedding service kept answering 429 Too Many Requests."""


class BackendConnectionError(BackendError):
    """The embedding service could not be reached, or did not answer in time."""


class SharedStateError(CacheError):
    """A shared cache could not reach Redis, or found its data there unusable."""


class MissingExtraError(CacheError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""
