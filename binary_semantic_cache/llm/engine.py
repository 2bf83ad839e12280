"""The lookup and store logic every cached client shares, written once for sync and async.

A request's steps are a generator that yields the slow work (embedding, the
scan, the put) as ``(step, args)`` tuples; :meth:`Engine.run` does each one in
the calling thread and :meth:`Engine.arun` off the event loop, so the rules
live in one place.
"""

import asyncio
import logging
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np

from ..cache import BinarySemanticCache
from ..encoder import BinaryEncoder
from . import keys
from .answers import is_record, usage_counts
from .metrics import Counters
from .policy import CachePolicy

log = logging.getLogger("binary_semantic_cache.llm")

DEFAULT_ENTRIES = 10_000  # of a cache made at first use


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """How the cache answered one call.

    Attributes
    ----------
    status : str
        ``"hit"`` (served from the cache), ``"miss"`` (went upstream, then
        stored if allowed) or ``"bypass"`` (went upstream, stored nothing).
    tier : str or None
        ``"exact"`` or ``"semantic"`` for a hit, else None.
    similarity : float or None
        Of a hit: 1.0 for exact, the estimated cosine for semantic.
    entry_id : int or None
        The entry that answered (hit) or that the answer was stored as (miss).
    age_seconds : float or None
        How old the answer of a hit is.
    reason : str or None
        Why a bypass bypassed, or why a miss's answer was not stored.
    """

    status: str
    tier: str | None = None
    similarity: float | None = None
    entry_id: int | None = None
    age_seconds: float | None = None
    reason: str | None = None


_INFO = {}  # id(response) -> (weak reference, CacheInfo)


def remember(response, info):
    """Attach ``info`` to a response object for :func:`cache_info`, without keeping it alive."""
    key = id(response)
    try:
        ref = weakref.ref(response, lambda _ref: _INFO.pop(key, None))
    except TypeError:
        return  # an object without weak references cannot be answered for
    _INFO[key] = (ref, info)


def cache_info(response):
    """The :class:`CacheInfo` of a response or stream a cached client returned.

    Answers for exactly that call, from any thread; None for an object that
    did not come from a cached client.
    """
    info = getattr(type(response), "_bsc_stream", False) and response.info
    if info:
        return info
    found = _INFO.get(id(response))
    if found is not None and found[0]() is response:
        return found[1]
    return None


class Pending:
    """One request between lookup and store."""

    __slots__ = ("plan", "controls", "where", "vector", "bypass", "record", "entry", "tier")

    def __init__(self, plan, controls):
        self.plan, self.controls = plan, controls
        self.where = self.vector = self.bypass = self.record = self.entry = self.tier = None


class Engine:
    """Policy, cache and counters of one cached client or decorated function."""

    def __init__(self, embedder, cache, policy, *, entries=DEFAULT_ENTRIES, factory=None):
        if embedder is not None and not (callable(getattr(embedder, "embed_text", None))
                                         and callable(getattr(embedder, "embed_texts", None))):
            raise TypeError(f"expected embedder with embed_text and embed_texts methods (such as "
                            f"OpenAIEmbeddingBackend), got {type(embedder).__name__}; or pass "
                            "embedder=None for exact matches only")
        if cache is not None and not all(callable(getattr(cache, m, None))
                                         for m in ("get", "get_exact", "put", "clear")):
            raise TypeError(f"expected cache as a BinarySemanticCache or None, got "
                            f"{type(cache).__name__}")
        if policy is None:
            policy = CachePolicy()
        elif not isinstance(policy, CachePolicy):
            raise TypeError(f"expected policy as a CachePolicy or None, got "
                            f"{type(policy).__name__}")
        self.embedder, self.policy, self._entries = embedder, policy, entries
        # Makes the cache at first use from the embedding dimension; None: a local one.
        self._factory = factory
        self.counters = Counters()
        self._cache = cache
        self._identity = keys.embedder_identity(embedder)
        self._lock = threading.Lock()
        self._flights = {}
        self._aembed = getattr(embedder, "aembed_text", None)
        self.usage_option = True  # ask streams for usage until an upstream refuses

    @property
    def cache(self):
        return self._cache

    def stats(self):
        return self.counters.snapshot()

    # ------------------------------------------------------------ the steps

    def look(self, plan, ctl):
        """Steps of a lookup; returns the :class:`Pending` (a hit has ``record`` set)."""
        state = Pending(plan, ctl)
        cache = self._cache
        embedder = self.embedder
        if cache is None:
            if embedder is not None:
                state.vector = yield ("embed", plan.text)
                if state.vector is None:
                    state.bypass = "embedder_error"
                    return state
            cache = self._first_cache(state.vector)
        try:
            state.where = self._keyed(plan, ctl, cache)
        except (TypeError, ValueError) as err:
            log.warning("request not cached: %s", err)
            state.bypass = "unkeyable_params"
            return state
        namespace, key = state.where
        if not ctl.no_cache:
            entry = cache.get_exact(key, namespace=namespace)
            if self._take(state, entry, "exact"):
                return state
        if embedder is None or (ctl.no_cache and ctl.no_store):
            return state
        if state.vector is None:
            state.vector = yield ("embed", plan.text)
            if state.vector is None:
                state.bypass = "embedder_error"
                return state
        if not ctl.no_cache:
            entry = yield ("scan", cache, state.vector, ctl.threshold, namespace)
            self._take(state, entry, "semantic")
        return state

    def again(self, state):
        """The exact tier once more, for a twin request's answer (True on a hit).

        Only a hit is counted: the miss was counted by the first look.
        """
        namespace, key = state.where
        return self._take(state, self._cache.get_exact(key, namespace=namespace), "exact",
                          count_miss=False)

    def store(self, state, record, reason):
        """Steps of a store; returns ``(entry id, None)``, or ``(None, reason)`` when skipped."""
        if reason is None and state.controls.no_store:
            reason = "no_store"
        if reason is not None:
            self.counters.skipped(reason)
            return None, reason
        namespace, key = state.where
        entry_id = yield ("put", self._cache, state.vector, record, state.controls.ttl,
                          namespace, key)
        self.counters.stored()
        return entry_id, None

    def hit_info(self, state):
        entry = state.entry
        return CacheInfo("hit", state.tier, entry.similarity, entry.id,
                         max(0.0, entry.last_accessed - entry.created_at))

    def _take(self, state, entry, tier, count_miss=True):
        kind = "text" if state.plan.scope[:1] == ("function",) else "message"
        hit = entry is not None and is_record(entry.response, kind)
        if hit or count_miss:
            self.counters.lookup(tier, hit)
        if hit:
            record = entry.response
            prompt, completion = usage_counts(record)
            price = self.policy.price(state.plan.model or record.get("model"))
            dollars = (prompt * price[0] + completion * price[1]) / 1e6 if price else 0.0
            latency = record.get("latency")
            self.counters.hit(prompt, completion, dollars,
                              latency if type(latency) is float else 0.0)
            state.entry, state.tier, state.record = entry, tier, record
        return hit

    def _keyed(self, plan, ctl, cache):
        spaces = tuple(ns for ns in (self.policy.namespace, ctl.namespace, ctl.tenant)
                       if ns is not None)
        identity = None
        if self._identity is not None:
            identity = [*self._identity, cache.encoder.embedding_dim]
        return keys.keyed(plan, spaces, identity)

    def _first_cache(self, vector):
        with self._lock:
            if self._cache is None:
                if vector is None:  # keys only: the codes are never used
                    encoder = BinaryEncoder(embedding_dim=1, code_bits=64)
                else:
                    encoder = BinaryEncoder(embedding_dim=int(np.shape(vector)[-1]))
                if self._factory is not None:
                    self._cache = self._factory(encoder)
                    return self._cache
                self._cache = BinarySemanticCache(encoder, max_entries=self._entries,
                                                  similarity_threshold=self.policy
                                                  .similarity_threshold)
            return self._cache

    # ------------------------------------------------------------ drivers

    def run(self, steps):
        """Drive ``steps`` in this thread."""
        return self._drive(steps, self._do)

    async def arun(self, steps):
        """Drive ``steps`` with the embedder, scan and put off the event loop."""
        try:
            step = next(steps)
            while True:
                step = steps.send(await self._ado(step))
        except StopIteration as stop:
            return stop.value

    @staticmethod
    def _drive(steps, do):
        try:
            step = next(steps)
            while True:
                step = steps.send(do(step))
        except StopIteration as stop:
            return stop.value

    def _do(self, step):
        kind, *args = step
        if kind == "embed":
            return self._embed_sync(*args)
        if kind == "scan":
            cache, vector, threshold, namespace = args
            return cache.get(vector, threshold=threshold, namespace=namespace)
        cache, vector, record, ttl, namespace, key = args
        return cache.put(vector, record, ttl=ttl, namespace=namespace, key=key)

    async def _ado(self, step):
        if step[0] == "embed":
            return await self._embed_async(step[1])
        return await asyncio.to_thread(self._do, step)

    def _embed_sync(self, text):
        started = time.perf_counter()
        try:
            return self._vector(self.embedder.embed_text(text))
        except Exception as err:  # noqa: BLE001  (an embedder failure only costs the lookup)
            log.warning("embedder failed, request sent upstream uncached: %r", err)
            return None
        finally:
            self.counters.embedded(time.perf_counter() - started)

    async def _embed_async(self, text):
        started = time.perf_counter()
        try:
            if self._aembed is not None:
                vector = await self._aembed(text)
            else:
                vector = await asyncio.to_thread(self.embedder.embed_text, text)
            return self._vector(vector)
        except Exception as err:  # noqa: BLE001
            log.warning("embedder failed, request sent upstream uncached: %r", err)
            return None
        finally:
            self.counters.embedded(time.perf_counter() - started)

    @staticmethod
    def _vector(value):
        vector = np.asarray(value, dtype=np.float32)
        if vector.ndim != 1 or vector.size == 0:
            raise ValueError(f"the embedder answered shape {vector.shape}, expected one vector")
        return vector

    # ------------------------------------------------------------ one request, start to end

    def serve(self, plan, ctl, stream, *, bypass, replay, fetch):
        """Answer one request: ``bypass(reason)``, ``replay(state)`` or ``fetch(state)``.

        Identical non-streamed misses in flight wait for the first one's
        answer; a new leader first checks whether a twin stored it already.
        """
        state = None if plan.bypass else self.run(self.look(plan, ctl))
        reason = plan.bypass or state.bypass
        if reason is not None:
            self.counters.bypass(reason)
            return bypass(reason)
        if state.record is not None:
            return replay(state)
        if stream or ctl.no_cache:
            return fetch(state)
        wait = self.lead(state.where)
        if wait is None:
            try:
                return replay(state) if self.again(state) else fetch(state)
            finally:
                self.land(state.where)
        wait.wait()
        return replay(state) if self.again(state) else fetch(state)

    async def aserve(self, plan, ctl, stream, *, bypass, replay, fetch):
        """The async twin of :meth:`serve`: ``bypass`` and ``fetch`` are coroutine functions."""
        state = None if plan.bypass else await self.arun(self.look(plan, ctl))
        reason = plan.bypass or state.bypass
        if reason is not None:
            self.counters.bypass(reason)
            return await bypass(reason)
        if state.record is not None:
            return replay(state)
        if stream or ctl.no_cache:
            return await fetch(state)
        wait = self.alead(state.where)
        if wait is None:
            try:
                return replay(state) if self.again(state) else await fetch(state)
            finally:
                self.aland(state.where)
        await wait
        return replay(state) if self.again(state) else await fetch(state)

    # ------------------------------------------------------------ twins in flight

    def lead(self, where):
        """None if this request leads ``where`` (call :meth:`land` after), else the Event to wait on."""
        with self._lock:
            event = self._flights.get(where)
            if event is None:
                self._flights[where] = threading.Event()
            return event

    def land(self, where):
        with self._lock:
            event = self._flights.pop(where)
        event.set()

    def alead(self, where):
        """The async twin of :meth:`lead`: None to lead, else an awaitable of the leader's end."""
        loop = asyncio.get_running_loop()
        with self._lock:
            future = self._flights.get((loop, where))
            if future is None:
                self._flights[loop, where] = loop.create_future()
                return None
            return asyncio.shield(future)

    def aland(self, where):
        with self._lock:
            future = self._flights.pop((asyncio.get_running_loop(), where))
        future.set_result(None)

    # ------------------------------------------------------------ housekeeping

    def clear(self, namespace=None):
        """Remove stored answers: all of this layer's, or those under ``namespace``."""
        cache = self._cache
        if cache is None:
            return 0
        path = keys.PREFIX
        spaces = [s for s in (self.policy.namespace, namespace) if s is not None]
        if spaces:
            path = keys.namespace_path(tuple(spaces))
        before = len(cache)
        for name in cache.namespaces():
            if isinstance(name, str) and name.startswith(path):
                cache.clear(namespace=name)
        return max(0, before - len(cache))
