"""A local semantic cache for LLM responses: binary codes, Numba popcount scans."""

from .cache import BinarySemanticCache
from .encoder import BinaryEncoder
from .errors import (
    BackendError,
    ByteOrderError,
    CacheError,
    CacheFileNotFoundError,
    ChecksumError,
    CorruptFileError,
    EncoderMismatchError,
    FormatVersionError,
    TruncatedFileError,
    UnsafeResponseError,
)
from .results import CacheEntry, CacheStats

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BinaryEncoder",
    "ByteOrderError",
    "BinarySemanticCache",
    "CacheEntry",
    "CacheError",
    "CacheFileNotFoundError",
    "CacheStats",
    "ChecksumError",
    "CorruptFileError",
    "EncoderMismatchError",
    "FormatVersionError",
    "TruncatedFileError",
    "UnsafeResponseError",
]
