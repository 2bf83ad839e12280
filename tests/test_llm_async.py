"""AsyncCachedOpenAI with the real openai.AsyncOpenAI; slow work stays off the event loop."""

import asyncio
import threading

import pytest

openai = pytest.importorskip("openai")

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache  # noqa: E402
from binary_semantic_cache.llm import AsyncCachedOpenAI, CachedOpenAI, cache_info  # noqa: E402

from .fake_servers import embed  # noqa: E402
from .llm_support import Embedder, ask, server, streamed_text, text_of  # noqa: E402,F401


class ThreadRecordingCache(BinarySemanticCache):
    """Records the thread every scan and put runs on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.threads = []

    def get(self, *args, **kwargs):
        self.threads.append(("get", threading.get_ident()))
        return super().get(*args, **kwargs)

    def put(self, *args, **kwargs):
        self.threads.append(("put", threading.get_ident()))
        return super().put(*args, **kwargs)


class AsyncEmbedder(Embedder):
    """An embedder with a native coroutine, as our backends have."""

    def __init__(self):
        super().__init__()
        self.awaited = 0

    async def aembed_text(self, text):
        self.awaited += 1
        await asyncio.sleep(0)
        return embed(text, self.dim)


def run(server, body, embedder=None, cache=None):
    async def main():
        raw = openai.AsyncOpenAI(base_url=server.url, api_key="k", max_retries=0, timeout=20)
        try:
            client = AsyncCachedOpenAI(raw, embedder=embedder, cache=cache)
            return await asyncio.wait_for(body(client), timeout=60)
        finally:
            await raw.close()
    return asyncio.run(main())


def test_hits_and_misses_with_the_embedder_and_scan_off_the_loop(server):
    embedder = Embedder()
    cache = ThreadRecordingCache(BinaryEncoder(embedding_dim=64))

    async def body(client):
        loop_thread = threading.get_ident()
        first = await client.chat.completions.create(**ask("What is the capital of France?"))
        near = await client.chat.completions.create(**ask("what is the capital of france"))
        exact = await client.chat.completions.create(**ask("What is the capital of France?"))
        return loop_thread, first, near, exact

    loop_thread, first, near, exact = run(server, body, embedder, cache)
    assert [cache_info(r).status for r in (first, near, exact)] == ["miss", "hit", "hit"]
    assert cache_info(near).tier == "semantic" and text_of(near) == text_of(first)
    assert server.chats == 1 and embedder.calls == 2
    assert loop_thread not in embedder.threads
    assert {kind for kind, _ in cache.threads} == {"get", "put"}
    assert all(thread != loop_thread for _, thread in cache.threads)


def test_a_native_async_embedder_is_awaited(server):
    embedder = AsyncEmbedder()

    async def body(client):
        await client.chat.completions.create(**ask("What is the capital of France?"))
        return await client.chat.completions.create(**ask("what is the capital of france"))

    near = run(server, body, embedder)
    assert cache_info(near).tier == "semantic" and embedder.awaited == 2
    assert embedder.calls == 0


def test_async_streams_miss_then_replay(server):
    async def body(client):
        miss = await client.chat.completions.create(**ask("Who wrote Hamlet?"), stream=True)
        first = [c async for c in miss]
        hit = await client.chat.completions.create(**ask("Who wrote Hamlet?"), stream=True,
                                                   stream_options={"include_usage": True})
        async with hit:
            second = [c async for c in hit]
        return miss, first, hit, second

    miss, first, hit, second = run(server, body, Embedder())
    assert cache_info(miss).status == "miss" and cache_info(hit).status == "hit"
    assert streamed_text(first) == streamed_text(second) and server.chats == 1
    assert all(c.choices for c in first) and second[-1].usage is not None


def test_an_async_stream_closed_early_stores_nothing(server):
    async def body(client):
        stream = await client.chat.completions.create(**ask("Who wrote Hamlet?"), stream=True)
        await stream.__anext__()
        await stream.close()
        return stream, client.cache

    stream, cache = run(server, body, Embedder())
    assert cache_info(stream).reason == "incomplete_stream" and len(cache) == 0


def test_concurrent_identical_requests_go_upstream_once(server):
    server.chat_delay = 0.05

    async def body(client):
        replies = await asyncio.gather(*(client.chat.completions.create(
            **ask("What is the capital of France?")) for _ in range(20)))
        return replies, client.stats()

    replies, stats = run(server, body, Embedder())
    assert server.chats == 1 and len({text_of(r) for r in replies}) == 1
    assert (stats.hits, stats.misses) == (19, 1)


def test_errors_propagate_and_bad_controls_raise_before_the_call(server):
    server.chat_script = [("status", 500, {})]

    async def body(client):
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(**ask("What is the capital of France?"))
        with pytest.raises(ValueError, match="unknown cache control"):
            await client.chat.completions.create(**ask("hi"), cache={"nocache": True})
        return client.stats()

    stats = run(server, body, Embedder())
    assert stats.skipped_stores == {"error": 1} and server.chats == 1


def test_each_wrapper_takes_only_its_own_kind_of_client(server):
    sync = openai.OpenAI(base_url=server.url, api_key="k")
    with pytest.raises(TypeError, match="use CachedOpenAI"):
        AsyncCachedOpenAI(sync)
    with pytest.raises(TypeError, match="use AsyncCachedOpenAI"):
        CachedOpenAI(openai.AsyncOpenAI(base_url=server.url, api_key="k"))
    with pytest.raises(TypeError, match="expected an openai client"):
        CachedOpenAI(object())
    sync.close()
