"""What a cached client may store and reuse: the policy, per-call controls and prices."""

import math
import numbers
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

# List prices in US dollars per million tokens (input, output), as published by
# OpenAI when this table was written. Override or extend them through
# ``CachePolicy(prices=...)``; a model missing from both prices nothing.
PRICES = MappingProxyType({
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "gpt-3.5-turbo": (0.50, 1.50),
})


@dataclass(frozen=True)
class CachePolicy:
    """What a cached client stores and when a stored answer may be reused.

    ========================  =========  ===============================================
    field                     default    meaning
    ========================  =========  ===============================================
    ``similarity_threshold``  0.90       least similarity of a semantic hit (0 to 1)
    ``ttl``                   None       seconds an answer lives; None: until evicted
    ``namespace``             None       a namespace every key lives under (str)
    ``cache_tool_calls``      False      store answers that call tools
    ``max_messages``          None       bypass requests with more messages than this
    ``prices``                None       ``{model: (input, output)}`` US dollars per
                                         million tokens, over :data:`PRICES`
    ========================  =========  ===============================================

    Examples
    --------
    >>> CachePolicy(ttl=3600, namespace="support").similarity_threshold
    0.9
    >>> CachePolicy(similarity_threshold=1.5)
    Traceback (most recent call last):
    ...
    ValueError: expected similarity_threshold as a number from 0 to 1, got 1.5
    """

    similarity_threshold: float = 0.90
    ttl: float | None = None
    namespace: str | None = None
    cache_tool_calls: bool = False
    max_messages: int | None = None
    prices: Mapping[str, tuple[float, float]] | None = field(default=None, hash=False)

    def __post_init__(self):
        set_ = object.__setattr__  # the one place a frozen instance is filled in
        set_(self, "similarity_threshold", fraction(self.similarity_threshold,
                                                    "similarity_threshold"))
        if self.ttl is not None:
            set_(self, "ttl", seconds(self.ttl, "ttl"))
        if self.namespace is not None and not isinstance(self.namespace, str):
            raise TypeError(f"expected namespace as a str or None, got "
                            f"{type(self.namespace).__name__}")
        if not isinstance(self.cache_tool_calls, bool):
            raise TypeError(f"expected cache_tool_calls as True or False, got "
                            f"{self.cache_tool_calls!r}")
        if self.max_messages is not None and (
                not isinstance(self.max_messages, numbers.Integral)
                or isinstance(self.max_messages, bool) or self.max_messages < 1):
            raise ValueError(f"expected max_messages as a whole number of at least 1 or None, "
                             f"got {self.max_messages!r}")
        set_(self, "prices", MappingProxyType({**PRICES, **_prices(self.prices)}))

    def price(self, model):
        """``(input, output)`` dollars per million tokens of ``model``, or None.

        A dated snapshot takes its family's price: ``gpt-4o-mini-2024-07-18``
        is priced as ``gpt-4o-mini`` unless listed itself.
        """
        if not isinstance(model, str):
            return None
        found = self.prices.get(model)
        if found is None:
            best = ""
            for name in self.prices:
                if model.startswith(name + "-") and len(name) > len(best):
                    best = name
            found = self.prices.get(best)
        return found


@dataclass(frozen=True, slots=True)
class Controls:
    """One call's ``cache={...}`` settings, checked against the policy.

    ``tenant`` is set by the proxy (never by a caller): the innermost namespace.
    """

    no_cache: bool = False
    no_store: bool = False
    ttl: float | None = None
    namespace: str | None = None
    threshold: float = 0.90
    tenant: str | None = None


CONTROL_KEYS = ("no-cache", "no-store", "ttl", "namespace", "threshold")


def controls(value, policy):
    """The per-call ``cache=`` keyword as :class:`Controls`; raises before any call is made."""
    if value is None:
        return Controls(ttl=policy.ttl, threshold=policy.similarity_threshold)
    if not isinstance(value, Mapping):
        raise TypeError(f"expected cache= as a dict such as {{'no-store': True}}, got "
                        f"{type(value).__name__}")
    unknown = [k for k in value if k not in CONTROL_KEYS]
    if unknown:
        raise ValueError(f"unknown cache control {unknown[0]!r}; expected some of "
                         f"{', '.join(map(repr, CONTROL_KEYS))}")
    for flag in ("no-cache", "no-store"):
        if flag in value and not isinstance(value[flag], bool):
            raise TypeError(f"expected cache[{flag!r}] as True or False, got {value[flag]!r}")
    ttl = policy.ttl if value.get("ttl") is None else seconds(value["ttl"], "cache['ttl']")
    namespace = value.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError(f"expected cache['namespace'] as a str, got {type(namespace).__name__}")
    threshold = policy.similarity_threshold
    if value.get("threshold") is not None:
        threshold = fraction(value["threshold"], "cache['threshold']")
        if threshold < policy.similarity_threshold:
            raise ValueError(f"cache['threshold'] may only raise the policy's "
                             f"{policy.similarity_threshold}, got {threshold}; lower the "
                             "policy's similarity_threshold instead")
    return Controls(value.get("no-cache", False), value.get("no-store", False), ttl, namespace,
                    threshold)


def fraction(value, what):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not 0.0 <= float(value) <= 1.0):
        raise ValueError(f"expected {what} as a number from 0 to 1, got {value!r}")
    return float(value)


def seconds(value, what):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not (math.isfinite(value) and value > 0)):
        raise ValueError(f"expected {what} as a positive finite number of seconds, got "
                         f"{value!r}")
    return float(value)


def _prices(table):
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise TypeError(f"expected prices as a dict {{model: (input, output)}} in dollars per "
                        f"million tokens, got {type(table).__name__}")
    out = {}
    for model, pair in table.items():
        try:
            low, high = (float(p) for p in pair)
        except (TypeError, ValueError):
            raise ValueError(f"expected prices[{model!r}] as (input, output) dollars per "
                             f"million tokens, got {pair!r}") from None
        if not (isinstance(model, str) and math.isfinite(low) and math.isfinite(high)
                and low >= 0 and high >= 0):
            raise ValueError(f"expected prices[{model!r}] as two non-negative finite numbers, "
                             f"got {pair!r}")
        out[model] = (low, high)
    return out
