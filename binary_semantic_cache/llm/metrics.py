"""What a cached client saved and spent: counters, their snapshot, and Prometheus export."""

import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from .._optional import require

TIERS, RESULTS = ("exact", "semantic"), ("hit", "miss")


@dataclass(frozen=True, slots=True)
class LLMStats:
    """Counters of one cached client (or decorated function) since it was made.

    Attributes
    ----------
    calls : int
        Requests seen: ``hits + misses + bypasses``.
    hits, misses : int
        Requests answered from the cache, and requests that went upstream
        after looking.
    lookups : Mapping[tuple[str, str], int]
        Lookups by ``(tier, result)``: tier ``"exact"`` or ``"semantic"``,
        result ``"hit"`` or ``"miss"``. A request stops at its first hit.
    bypasses : Mapping[str, int]
        Requests sent upstream without looking or storing, by reason
        (``"n"``, ``"logprobs"``, ``"last_not_user"``, ``"non_text_content"``, ...).
    stores : int
        Fresh answers stored.
    skipped_stores : Mapping[str, int]
        Fresh answers not stored, by reason (``"error"``, ``"length"``,
        ``"content_filter"``, ``"no_finish_reason"``, ``"tool_calls"``,
        ``"empty"``, ``"incomplete_stream"``, ``"no_store"``, ...).
    prompt_tokens_saved, completion_tokens_saved : int
        Tokens the hits' stored answers reported, which the hits did not pay for.
    dollars_saved : float
        Those tokens at the policy's prices; models without a price count 0.
    upstream_seconds_saved : float
        Sum over hits of how long the stored answer took upstream.
    embedding_seconds : float
        Time spent in the embedder.
    embedding_calls : int
        Calls of the embedder.
    hit_rate : float
        ``hits / (hits + misses)``, 0.0 before the first lookup.
    """

    calls: int
    hits: int
    misses: int
    lookups: Mapping[tuple[str, str], int]
    bypasses: Mapping[str, int]
    stores: int
    skipped_stores: Mapping[str, int]
    prompt_tokens_saved: int
    completion_tokens_saved: int
    dollars_saved: float
    upstream_seconds_saved: float
    embedding_seconds: float
    embedding_calls: int
    hit_rate: float


class Counters:
    """Thread-safe counters behind :class:`LLMStats`."""

    def __init__(self):
        self._lock = threading.Lock()
        self._lookups = {(t, r): 0 for t in TIERS for r in RESULTS}
        self._bypasses, self._skips = {}, {}
        self._hits = self._misses = self._stores = self._embeds = 0
        self._prompt = self._completion = 0
        self._dollars = self._upstream = self._embedding = 0.0

    def lookup(self, tier, hit):
        with self._lock:
            self._lookups[tier, "hit" if hit else "miss"] += 1

    def hit(self, prompt_tokens, completion_tokens, dollars, upstream_seconds):
        with self._lock:
            self._hits += 1
            self._prompt += prompt_tokens
            self._completion += completion_tokens
            self._dollars += dollars
            self._upstream += upstream_seconds

    def miss(self):
        with self._lock:
            self._misses += 1

    def bypass(self, reason):
        with self._lock:
            self._bypasses[reason] = self._bypasses.get(reason, 0) + 1

    def stored(self):
        with self._lock:
            self._stores += 1

    def skipped(self, reason):
        with self._lock:
            self._skips[reason] = self._skips.get(reason, 0) + 1

    def embedded(self, seconds):
        with self._lock:
            self._embeds += 1
            self._embedding += seconds

    def snapshot(self):
        with self._lock:
            looked = self._hits + self._misses
            return LLMStats(
                calls=looked + sum(self._bypasses.values()), hits=self._hits,
                misses=self._misses, lookups=MappingProxyType(dict(self._lookups)),
                bypasses=MappingProxyType(dict(self._bypasses)), stores=self._stores,
                skipped_stores=MappingProxyType(dict(self._skips)),
                prompt_tokens_saved=self._prompt, completion_tokens_saved=self._completion,
                dollars_saved=self._dollars, upstream_seconds_saved=self._upstream,
                embedding_seconds=self._embedding, embedding_calls=self._embeds,
                hit_rate=self._hits / looked if looked else 0.0)


class PrometheusCollector:
    """The :class:`LLMStats` of a source as ``bsc_`` metrics, read at every scrape.

    Register it with ``prometheus_client.REGISTRY.register(collector)`` or
    through ``CachedOpenAI.register_metrics()``. ``labels`` (a dict) is added
    to every sample, so several clients can share one registry.
    """

    def __init__(self, stats, cache=None, labels=None):
        self._core = require("prometheus_client.core", "metrics")
        self._stats, self._cache = stats, cache
        self._labels = dict(labels or {})

    def describe(self):
        return []  # metrics are made at collect time; no up-front description

    def collect(self):
        core, s = self._core, self._stats()
        names = list(self._labels)
        extra = [self._labels[k] for k in names]

        def family(kind, name, doc, labels=()):
            cls = core.CounterMetricFamily if kind == "counter" else core.GaugeMetricFamily
            return cls(name, doc, labels=[*labels, *names])

        lookups = family("counter", "bsc_lookups", "Cache lookups by tier and result",
                         ("tier", "result"))
        for (tier, result), n in s.lookups.items():
            lookups.add_metric([tier, result, *extra], n)
        yield lookups
        requests = family("counter", "bsc_requests", "Requests by outcome", ("status",))
        for status, n in (("hit", s.hits), ("miss", s.misses),
                          ("bypass", s.calls - s.hits - s.misses)):
            requests.add_metric([status, *extra], n)
        yield requests
        for name, doc, table in (("bsc_bypasses", "Requests sent upstream uncached, by reason",
                                  s.bypasses),
                                 ("bsc_skipped_stores", "Fresh answers not stored, by reason",
                                  s.skipped_stores)):
            metric = family("counter", name, doc, ("reason",))
            for reason, n in sorted(table.items()):
                metric.add_metric([reason, *extra], n)
            yield metric
        tokens = family("counter", "bsc_tokens_saved", "Tokens hits did not pay for", ("kind",))
        tokens.add_metric(["prompt", *extra], s.prompt_tokens_saved)
        tokens.add_metric(["completion", *extra], s.completion_tokens_saved)
        yield tokens
        for name, doc, value in (
                ("bsc_stores", "Fresh answers stored", s.stores),
                ("bsc_dollars_saved", "Dollars hits did not pay, at the policy's prices",
                 s.dollars_saved),
                ("bsc_upstream_seconds_saved", "Upstream seconds the hits' answers took",
                 s.upstream_seconds_saved),
                ("bsc_embedding_seconds", "Seconds spent in the embedder", s.embedding_seconds),
                ("bsc_embedding_calls", "Calls of the embedder", s.embedding_calls)):
            metric = family("counter", name, doc)
            metric.add_metric(extra, value)
            yield metric
        cache = self._cache()
        if cache is not None and not cache.closed:
            entries = family("gauge", "bsc_cache_entries", "Live entries in the cache")
            entries.add_metric(extra, len(cache))
            yield entries
