"""Drop-in cached wrappers of the ``openai`` clients, by composition.

``client.chat.completions.create`` goes through the cache; every other
attribute, at every level, is the wrapped client's own.
"""

import logging
import time

from .._optional import require
from . import keys
from .answers import chunk_dicts, completion_dict, completion_record
from .engine import CacheInfo, Engine, remember
from .metrics import PrometheusCollector
from .policy import controls
from .streams import AsyncCachedStream, AsyncReplayStream, CachedStream, ReplayStream

log = logging.getLogger("binary_semantic_cache.llm")

# Parameters the SDK accepts as any iterable: read once here, so the key and
# the forwarded request see the same items.
_ITERABLES = ("messages", "tools", "functions")


class _Base:
    _async = False

    def __init__(self, client, embedder=None, *, cache=None, policy=None, _engine=None):
        self._openai = require("openai", "openai")
        chat = getattr(getattr(client, "chat", None), "completions", None)
        if not callable(getattr(chat, "create", None)):
            raise TypeError(f"expected an openai client (openai.OpenAI or openai.AsyncOpenAI), "
                            f"got {type(client).__name__}")
        # Clients of other makers that speak the same API are welcome; only the
        # SDK's other flavour is refused, since its calls would not be awaited.
        wrong = self._openai.OpenAI if self._async else self._openai.AsyncOpenAI
        if isinstance(client, wrong):
            other = "openai.AsyncOpenAI" if self._async else "openai.OpenAI"
            raise TypeError(f"{type(self).__name__} wraps {other}, got "
                            f"{type(client).__name__}; use "
                            f"{'CachedOpenAI' if self._async else 'AsyncCachedOpenAI'} for it")
        self._client = client
        self._engine = _engine or Engine(embedder, cache, policy)
        types = require("openai.types.chat", "openai")
        self._completion_type, self._chunk_type = types.ChatCompletion, types.ChatCompletionChunk
        self._omitted = tuple(t for t in (getattr(self._openai, "NotGiven", None),
                                          getattr(self._openai, "Omit", None)) if t)
        self.chat = _Chat(self)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._client, name)

    @property
    def cache(self):
        """The BinarySemanticCache answers are kept in (None until first use if none was given)."""
        return self._engine.cache

    @property
    def policy(self):
        """The :class:`CachePolicy`."""
        return self._engine.policy

    @property
    def embedder(self):
        return self._engine.embedder

    def stats(self):
        """An :class:`LLMStats` snapshot: lookups, bypasses, skipped stores, what was saved."""
        return self._engine.stats()

    def clear(self, namespace=None):
        """Remove stored answers: every one of this client's policy, or those under ``namespace``.

        Returns how many entries went.
        """
        return self._engine.clear(namespace)

    def register_metrics(self, registry=None, *, labels=None):
        """Expose :meth:`stats` as ``bsc_`` Prometheus metrics (needs the ``[metrics]`` extra).

        ``registry`` defaults to ``prometheus_client.REGISTRY``; ``labels`` (a
        dict) tells several clients apart in one registry. Returns the collector.
        """
        collector = PrometheusCollector(self.stats, lambda: self._engine.cache, labels)
        if registry is None:
            registry = require("prometheus_client", "metrics").REGISTRY
        registry.register(collector)
        return collector

    def with_options(self, **options):
        """The wrapped client's ``with_options``, still cached, sharing this cache and counters."""
        return type(self)(self._client.with_options(**options), _engine=self._engine)

    copy = with_options

    def __repr__(self):
        cache = self._engine.cache
        size = "no cache yet" if cache is None else f"{len(cache)} entries"
        return (f"{type(self).__name__}({type(self._client).__name__}, "
                f"embedder={type(self._engine.embedder).__name__}, {size})")

    # ------------------------------------------------------------ shared request work

    def _start(self, kwargs):
        """``(request, controls, plan)`` with the ``cache=`` controls checked and removed."""
        engine = self._engine
        ctl = controls(kwargs.pop("cache", None), engine.policy)
        request = {}
        for name, value in kwargs.items():
            if isinstance(value, self._omitted):
                continue
            if name in _ITERABLES and not isinstance(value, (list, tuple, str, dict)):
                try:
                    value = list(value)
                except TypeError:
                    pass  # the SDK names the type in its own error
            request[name] = value
        params = {k: v for k, v in request.items() if k != "messages"}
        return request, ctl, keys.chat_plan(params, request.get("messages"),
                                            engine.policy.max_messages)

    def _usage_request(self, request):
        """``(request, shown)``: the stream request asking for usage, and whether the caller did."""
        options = request.get("stream_options") or {}
        shown = bool(options.get("include_usage"))
        if shown or not self._engine.usage_option:
            return request, shown
        return {**request, "stream_options": {**options, "include_usage": True}}, False

    def _refused_usage(self, err):
        if isinstance(err, self._openai.BadRequestError) and "stream_options" in str(err):
            log.info("upstream refused stream_options; streams will not ask for usage")
            self._engine.usage_option = False
            return True
        return False

    def _replay(self, state, request):
        info = self._engine.hit_info(state)
        if request.get("stream"):
            options = request.get("stream_options") or {}
            chunks = chunk_dicts(state.record, bool(options.get("include_usage")))
            return (AsyncReplayStream if self._async else ReplayStream)(self._chunk_type, chunks,
                                                                        info)
        response = self._completion_type.model_validate(completion_dict(state.record))
        remember(response, info)
        return response

    def _stored(self, response, started):
        return completion_record(response.model_dump(mode="json"), time.perf_counter() - started,
                                 self._engine.policy.cache_tool_calls)


class CachedOpenAI(_Base):
    """An ``openai.OpenAI`` client whose chat completions go through a semantic cache.

    Parameters
    ----------
    client : openai.OpenAI
        Any OpenAI-compatible endpoint (OpenAI, Ollama's ``/v1``, vLLM, llama.cpp).
    embedder : object with ``embed_text`` and ``embed_texts``, optional
        Embeds the last user message for semantic hits; None keeps the exact
        tier only, and no request is ever embedded.
    cache : BinarySemanticCache, optional, keyword-only
        Where answers live; None makes one of 10,000 entries at first use.
    policy : CachePolicy, optional, keyword-only

    Notes
    -----
    ``create(..., cache={...})`` takes per-call controls: ``"no-cache"``,
    ``"no-store"``, ``"ttl"``, ``"namespace"``, ``"threshold"`` (see
    docs/llm.md). :func:`cache_info` tells how a returned object was answered.
    Concurrent identical requests (non-streamed) wait for the first one's
    answer instead of each going upstream.
    """

    def _create(self, kwargs):
        request, ctl, plan = self._start(kwargs)

        def bypass(reason):
            response = self._upstream().create(**request)
            remember(response, CacheInfo("bypass", reason=reason))
            return response

        return self._engine.serve(plan, ctl, bool(request.get("stream")), bypass=bypass,
                                  replay=lambda state: self._replay(state, request),
                                  fetch=lambda state: self._fetch(request, state))

    def _upstream(self):
        return self._client.chat.completions

    def _fetch(self, request, state):
        engine = self._engine
        engine.counters.miss()
        started = time.perf_counter()
        try:
            if request.get("stream"):
                sent, shown = self._usage_request(request)
                try:
                    upstream = self._upstream().create(**sent)
                except Exception as err:
                    if sent is request or not self._refused_usage(err):
                        raise
                    upstream = self._upstream().create(**request)
                return CachedStream(upstream, engine, state, shown, started)
            response = self._upstream().create(**request)
        except BaseException:
            engine.counters.skipped("error")
            raise
        entry_id, reason = engine.run(engine.store(state, *self._stored(response, started)))
        remember(response, CacheInfo("miss", entry_id=entry_id, reason=reason))
        return response


class AsyncCachedOpenAI(_Base):
    """The ``openai.AsyncOpenAI`` twin of :class:`CachedOpenAI`.

    ``await client.chat.completions.create(...)`` and ``async for`` over a
    stream, as with the SDK. The embedder (its ``aembed_text`` when it has
    one, else ``embed_text`` in a worker thread), the scan and the store run
    off the event loop.
    """

    _async = True

    async def _create(self, kwargs):
        request, ctl, plan = self._start(kwargs)

        async def bypass(reason):
            response = await self._client.chat.completions.create(**request)
            remember(response, CacheInfo("bypass", reason=reason))
            return response

        async def fetch(state):
            return await self._fetch(request, state)

        return await self._engine.aserve(plan, ctl, bool(request.get("stream")), bypass=bypass,
                                         replay=lambda state: self._replay(state, request),
                                         fetch=fetch)

    async def _fetch(self, request, state):
        engine = self._engine
        engine.counters.miss()
        started = time.perf_counter()
        upstream = self._client.chat.completions
        try:
            if request.get("stream"):
                sent, shown = self._usage_request(request)
                try:
                    stream = await upstream.create(**sent)
                except Exception as err:
                    if sent is request or not self._refused_usage(err):
                        raise
                    stream = await upstream.create(**request)
                return AsyncCachedStream(stream, engine, state, shown, started)
            response = await upstream.create(**request)
        except BaseException:
            engine.counters.skipped("error")
            raise
        entry_id, reason = await engine.arun(engine.store(state,
                                                          *self._stored(response, started)))
        remember(response, CacheInfo("miss", entry_id=entry_id, reason=reason))
        return response


class _Chat:
    def __init__(self, owner):
        self._owner = owner
        self.completions = _Completions(owner)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._owner._client.chat, name)


class _Completions:
    def __init__(self, owner):
        self._owner = owner

    def create(self, **kwargs):
        """The SDK's ``create``, through the cache; ``cache={...}`` holds per-call controls."""
        return self._owner._create(kwargs)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._owner._client.chat.completions, name)
