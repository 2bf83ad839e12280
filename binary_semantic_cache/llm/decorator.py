"""``@cached``: the cache in front of a plain ``fn(prompt, **params) -> str``, sync or async."""

import functools
import inspect
import time

from . import keys
from .answers import text_record
from .engine import Engine
from .policy import controls


def cached(embedder=None, *, cache=None, policy=None):
    """Cache a function ``fn(prompt: str, **params) -> str`` by the meaning of ``prompt``.

    The key rules are those of :class:`CachedOpenAI`: the partition holds the
    function's qualified name, its ``params``, the namespaces and the
    embedder's identity; the exact key is the normalised prompt. A call may
    pass ``cache={...}`` controls, removed before ``fn`` sees its params. An
    exception, or a result that is not a non-empty str, is never stored.
    ``@cached`` alone (no parentheses) caches exact prompts only.

    The wrapper has ``.stats()``, ``.cache`` and ``.clear(namespace=None)``.

    Examples
    --------
    >>> calls = []
    >>> @cached()
    ... def shout(prompt, *, punctuation="!"):
    ...     calls.append(prompt)
    ...     return prompt.upper() + punctuation
    >>> shout("hello  world"), shout("hello world"), shout("hello world", punctuation="?")
    ('HELLO  WORLD!', 'HELLO  WORLD!', 'HELLO WORLD?')
    >>> len(calls), shout.stats().hits
    (2, 1)
    """
    if callable(embedder) and not hasattr(embedder, "embed_text") and cache is policy is None:
        return cached()(embedder)  # used bare: @cached

    def wrap(fn):
        if not callable(fn):
            raise TypeError(f"expected a function to cache, got {type(fn).__name__}")
        engine = Engine(embedder, cache, policy)
        kind = _AsyncCached if inspect.iscoroutinefunction(fn) else _Cached
        return functools.update_wrapper(kind(fn, engine), fn)

    return wrap


class _Cached:
    def __init__(self, fn, engine):
        self._fn, self._engine = fn, engine
        self._name = f"{fn.__module__}.{fn.__qualname__}"

    @property
    def cache(self):
        return self._engine.cache

    def stats(self):
        return self._engine.stats()

    def clear(self, namespace=None):
        return self._engine.clear(namespace)

    def _plan(self, prompt, params):
        ctl = controls(params.pop("cache", None), self._engine.policy)
        return ctl, keys.call_plan(self._name, prompt, params)

    def _record(self, result, started):
        if not isinstance(result, str):
            return None, "not_text"
        if not result:
            return None, "empty"
        return text_record(result, time.perf_counter() - started), None

    def __call__(self, prompt, **params):
        engine = self._engine
        ctl, plan = self._plan(prompt, params)
        state = None if plan.bypass else engine.run(engine.look(plan, ctl))
        reason = plan.bypass or state.bypass
        if reason is not None:
            engine.counters.bypass(reason)
            return self._fn(prompt, **params)
        if state.record is not None:
            return state.record["text"]
        engine.counters.miss()
        started = time.perf_counter()
        try:
            result = self._fn(prompt, **params)
        except BaseException:
            engine.counters.skipped("error")
            raise
        engine.run(engine.store(state, *self._record(result, started)))
        return result

    def __repr__(self):
        return f"<cached {self._name}>"


class _AsyncCached(_Cached):
    async def __call__(self, prompt, **params):
        engine = self._engine
        ctl, plan = self._plan(prompt, params)
        state = None if plan.bypass else await engine.arun(engine.look(plan, ctl))
        reason = plan.bypass or state.bypass
        if reason is not None:
            engine.counters.bypass(reason)
            return await self._fn(prompt, **params)
        if state.record is not None:
            return state.record["text"]
        engine.counters.miss()
        started = time.perf_counter()
        try:
            result = await self._fn(prompt, **params)
        except BaseException:
            engine.counters.skipped("error")
            raise
        await engine.arun(engine.store(state, *self._record(result, started)))
        return result
