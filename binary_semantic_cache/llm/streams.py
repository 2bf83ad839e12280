"""What ``create(..., stream=True)`` returns: a miss passed through and stored, or a replay.

A miss hands each upstream chunk over as it arrives. Only the chunks from the
one carrying ``finish_reason`` on are held, until the upstream ends cleanly,
so the answer is stored before its last chunk is handed over. A stream closed
early, or one that raised, stores nothing.
"""

import time

from .answers import HOLD, SEND, Accumulator
from .engine import CacheInfo


class _Stream:
    _bsc_stream = True  # cache_info() reads ``info`` of these

    @property
    def info(self):
        """The :class:`CacheInfo` of this call (a miss gains its entry id once stored)."""
        return self._info


class _Miss(_Stream):
    def __init__(self, upstream, engine, state, show_usage, started):
        self._upstream, self._engine, self._state = upstream, engine, state
        self._show_usage, self._started = show_usage, started
        self._info = CacheInfo("miss")
        self._acc = Accumulator()
        self._settled = False

    @property
    def response(self):
        """The upstream HTTP response."""
        return self._upstream.response

    def _sort(self, chunk, held):
        """True to hand ``chunk`` over now; the finish and what follows go to ``held``."""
        step = self._acc.take(chunk.model_dump(mode="json"), self._show_usage)
        if step == HOLD:
            held.append(chunk)
        return step == SEND

    def _failed(self, err):
        self._give_up("incomplete_stream" if isinstance(err, GeneratorExit) else "stream_error")

    def _give_up(self, reason):
        if not self._settled:
            self._settled = True
            self._engine.counters.skipped(reason)
            self._info = CacheInfo("miss", reason=reason)

    def _steps(self):
        """Store steps of the finished answer (run before the held chunks go out)."""
        self._settled = True
        record, reason = self._acc.result(time.perf_counter() - self._started,
                                          self._engine.policy.cache_tool_calls)
        entry_id, reason = yield from self._engine.store(self._state, record, reason)
        self._info = CacheInfo("miss", entry_id=entry_id, reason=reason)


class CachedStream(_Miss):
    """A streamed miss: the upstream's chunks as they arrive, the whole answer stored at its end."""

    def __init__(self, *args):
        super().__init__(*args)
        self._iterator = self._chunks()

    def _chunks(self):
        held = []
        try:
            for chunk in self._upstream:
                if self._sort(chunk, held):
                    yield chunk
        except BaseException as err:
            self._failed(err)
            raise
        self._engine.run(self._steps())
        yield from held

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._iterator)

    def close(self):
        """Stop reading; nothing is stored unless the answer was already complete."""
        self._iterator.close()
        self._give_up("incomplete_stream")
        self._upstream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncCachedStream(_Miss):
    """The async twin of :class:`CachedStream`; the store runs off the event loop."""

    def __init__(self, *args):
        super().__init__(*args)
        self._iterator = self._chunks()

    async def _chunks(self):
        held = []
        try:
            async for chunk in self._upstream:
                if self._sort(chunk, held):
                    yield chunk
        except BaseException as err:
            self._failed(err)
            raise
        await self._engine.arun(self._steps())
        for chunk in held:
            yield chunk

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self._iterator.__anext__()

    async def close(self):
        """Stop reading; nothing is stored unless the answer was already complete."""
        await self._iterator.aclose()
        self._give_up("incomplete_stream")
        await self._upstream.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


class _Replay(_Stream):
    response = None  # no HTTP response stands behind a replay

    def __init__(self, chunk_type, chunks, info):
        self._type, self._chunks, self._info = chunk_type, iter(chunks), info

    def _next(self):
        return self._type.model_validate(next(self._chunks))


class ReplayStream(_Replay):
    """A hit with ``stream=True``: the stored answer as ChatCompletionChunks, at once."""

    def __iter__(self):
        return self

    def __next__(self):
        return self._next()

    def close(self):
        self._chunks = iter(())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncReplayStream(_Replay):
    """The async twin of :class:`ReplayStream`."""

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return self._next()
        except StopIteration:
            raise StopAsyncIteration from None

    async def close(self):
        self._chunks = iter(())

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
