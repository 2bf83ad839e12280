"""Cache LLM calls: a drop-in wrapper of the openai client and a decorator for plain functions.

See docs/llm.md for the keys, the policy, the per-call controls and what is
never stored.
"""

from .client import AsyncCachedOpenAI, CachedOpenAI
from .decorator import cached
from .engine import CacheInfo, cache_info
from .metrics import LLMStats, PrometheusCollector
from .policy import PRICES, CachePolicy

__all__ = ["AsyncCachedOpenAI", "CacheInfo", "CachePolicy", "CachedOpenAI", "LLMStats", "PRICES",
           "PrometheusCollector", "cache_info", "cached"]
