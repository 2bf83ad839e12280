"""A local semantic cache for LLM responses: binary codes, Numba popcount scans."""

from .cache import BinarySemanticCache
from .encoder import BinaryEncoder
from .errors import (
    BackendAuthError,
    BackendConnectionError,
    BackendError,
    BackendRateLimitError,
    ByteOrderError,
    CacheClosedError,
    CacheError,
    CacheFileNotFoundError,
    CacheIOError,
    ChecksumError,
    CorruptFileError,
    EncoderMismatchError,
    ForeignDirectoryError,
    FormatVersionError,
    MissingExtraError,
    SharedStateError,
    TruncatedFileError,
    UnsafeResponseError,
)
from . import datasets
from .quality import CalibrationResult, EvaluationResult, calibrate, evaluate
from .results import CacheEntry, CacheStats

__version__ = "0.1.0"

__all__ = [
    "BackendAuthError",
    "BackendConnectionError",
    "BackendError",
    "BackendRateLimitError",
    "BinaryEncoder",
    "ByteOrderError",
    "BinarySemanticCache",
    "CacheClosedError",
    "CacheEntry",
    "CacheError",
    "CacheFileNotFoundError",
    "CacheIOError",
    "CacheStats",
    "CalibrationResult",
    "ChecksumError",
    "CorruptFileError",
    "EncoderMismatchError",
    "EvaluationResult",
    "ForeignDirectoryError",
    "FormatVersionError",
    "MissingExtraError",
    "SharedStateError",
    "TruncatedFileError",
    "UnsafeResponseError",
    "calibrate",
    "datasets",
    "evaluate",
]
