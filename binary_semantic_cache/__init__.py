"""A local semantic cache for LLM responses: binary codes, Numba popcount scans."""

from .cache import BinarySemanticCache
from .encoder import BinaryEncoder
from .errors import (
    BackendError,
    CacheError,
    ChecksumError,
    CorruptFileError,
    EncoderMismatchError,
    FormatVersionError,
)
from .results import CacheEntry, CacheStats

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BinaryEncoder",
    "BinarySemanticCache",
    "CacheEntry",
    "CacheError",
    "CacheStats",
    "ChecksumError",
    "CorruptFileError",
    "EncoderMismatchError",
    "FormatVersionError",
]
