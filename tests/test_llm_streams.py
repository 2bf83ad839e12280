"""Streamed chat completions through CachedOpenAI: pass-through, store at the end, replay."""

import threading

import pytest

openai = pytest.importorskip("openai")

from binary_semantic_cache.llm import CachedOpenAI, CachePolicy, cache_info  # noqa: E402

from .llm_support import (Embedder, ask, openai_client, server, streamed_text,  # noqa: E402,F401
                          text_of)


@pytest.fixture
def client(openai_client):
    return CachedOpenAI(openai_client, embedder=Embedder())


def test_a_streamed_miss_is_stored_and_shared_with_plain_calls(client, server):
    stream = client.chat.completions.create(**ask("What is the capital of France?"), stream=True)
    chunks = list(stream)
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    text = streamed_text(chunks)
    assert text.startswith("answer 1 to:") and cache_info(stream).status == "miss"
    assert cache_info(stream).entry_id is not None
    plain = client.chat.completions.create(**ask("What is the capital of France?"))
    assert cache_info(plain).status == "hit" and text_of(plain) == text
    assert server.chats == 1


def test_a_replayed_stream_equals_the_original_text(client, server):
    plain = client.chat.completions.create(**ask("Tell me a long story about " + "dragons " * 40))
    stream = client.chat.completions.create(**ask("Tell me a long story about " + "dragons " * 40),
                                            stream=True)
    with stream:
        chunks = list(stream)
    assert cache_info(stream).status == "hit" and stream.response is None
    assert streamed_text(chunks) == text_of(plain) and server.chats == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(chunks) > 3  # content arrives in several deltas
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]


def test_usage_is_asked_for_and_shown_only_to_callers_who_asked(client, server):
    quiet = list(client.chat.completions.create(**ask("What is the capital of France?"),
                                                stream=True))
    assert server.chat_log()[-1]["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in quiet)
    loud = list(client.chat.completions.create(**ask("What is the capital of France?"),
                                               stream=True,
                                               stream_options={"include_usage": True}))
    assert loud[-1].choices == [] and loud[-1].usage.completion_tokens > 0
    assert client.stats().completion_tokens_saved == loud[-1].usage.completion_tokens


def test_an_upstream_that_refuses_stream_options_is_asked_without(client, server):
    server.chat_script = ["no_stream_options", "no_stream_options"]
    stream = client.chat.completions.create(**ask("What is the capital of France?"), stream=True)
    text = streamed_text(stream)
    assert text.startswith("answer 2") and "stream_options" not in server.chat_log()[-1]
    assert cache_info(stream).entry_id is not None
    later = client.chat.completions.create(**ask("Who wrote Hamlet?"), stream=True)
    assert streamed_text(later) and server.chats == 3  # asked once, then never again


def test_chunks_are_handed_over_as_they_arrive(client, server):
    go = threading.Event()
    server.chat_script = [("hold", go)]
    stream = client.chat.completions.create(**ask("What is the capital of France?"), stream=True)
    first, second = next(stream), next(stream)
    # The upstream is still holding the rest back: nothing waited for it.
    assert not server.released.is_set() and second.choices[0].delta.content == "answer "
    go.set()
    assert streamed_text([first, second, *stream]).startswith("answer 1 to:")


def test_the_answer_is_stored_before_the_last_chunk_is_handed_over(client, server):
    stream = client.chat.completions.create(**ask("What is the capital of France?"), stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].finish_reason == "stop":
            assert len(client.cache) == 1 and cache_info(stream).entry_id is not None
            break
    else:
        pytest.fail("no finish chunk")


def test_a_stream_left_early_stores_nothing(client, server):
    stream = client.chat.completions.create(**ask("What is the capital of France?"), stream=True)
    next(stream), next(stream)
    stream.close()
    assert cache_info(stream).reason == "incomplete_stream" and len(client.cache) == 0
    again = client.chat.completions.create(**ask("What is the capital of France?"), stream=True)
    with again:
        for _ in zip(range(2), again):
            pass
    assert client.stats().skipped_stores == {"incomplete_stream": 2} and len(client.cache) == 0


@pytest.mark.parametrize("action, reason", [(("cut", 2), "no_finish_reason"),
                                            (("finish", "length"), "length")])
def test_a_cut_or_truncated_stream_is_not_stored(client, server, action, reason):
    server.chat_script = [action]
    stream = client.chat.completions.create(**ask("What is the capital of France?"), stream=True)
    list(stream)
    assert cache_info(stream).reason == reason and len(client.cache) == 0


def test_a_stream_that_raises_is_not_stored(client, server):
    server.chat_script = ["stream_error"]
    stream = client.chat.completions.create(**ask("What is the capital of France?"), stream=True)
    with pytest.raises(openai.APIError, match="scripted stream failure"):
        list(stream)
    assert cache_info(stream).reason == "stream_error" and len(client.cache) == 0


def test_streamed_tool_calls_are_stored_and_replayed(openai_client, server):
    client = CachedOpenAI(openai_client, Embedder(), policy=CachePolicy(cache_tool_calls=True))
    server.chat_script = ["tool_calls"]
    first = list(client.chat.completions.create(**ask("Look up the weather"), stream=True))
    again = list(client.chat.completions.create(**ask("Look up the weather"), stream=True))
    plain = client.chat.completions.create(**ask("Look up the weather"))

    def calls(chunks):
        return [(d.id, d.function.name, d.function.arguments)
                for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]

    assert calls(again) == calls(first) and server.chats == 1
    call = plain.choices[0].message.tool_calls[0]
    assert [(call.id, call.function.name, call.function.arguments)] == calls(first)
    assert again[-1].choices[0].finish_reason == "tool_calls"


def test_a_bypassed_stream_is_the_sdks_own(client, server):
    stream = client.chat.completions.create(**ask("What is the capital of France?", n=2),
                                            stream=True)
    assert isinstance(stream, openai.Stream) and cache_info(stream).status == "bypass"
    assert streamed_text(stream)
