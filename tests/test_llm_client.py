"""CachedOpenAI with the real openai client against a loopback chat-completions server."""

import threading

import pytest

openai = pytest.importorskip("openai")

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache  # noqa: E402
from binary_semantic_cache.llm import CachedOpenAI, CachePolicy, cache_info  # noqa: E402

from .conftest import FakeClock  # noqa: E402
from .llm_support import Embedder, ask, openai_client, server, text_of  # noqa: E402,F401


@pytest.fixture
def embedder():
    return Embedder()


@pytest.fixture
def client(openai_client, embedder):
    return CachedOpenAI(openai_client, embedder=embedder)


def test_a_repeat_is_an_exact_hit_that_never_embeds(client, server, embedder):
    first = client.chat.completions.create(**ask("What is the capital of France?"))
    calls = embedder.calls
    again = client.chat.completions.create(**ask("  What is the capital   of France? "))
    assert isinstance(again, openai.types.chat.ChatCompletion)
    assert text_of(again) == text_of(first) and server.chats == 1
    assert embedder.calls == calls == 1
    miss, hit = cache_info(first), cache_info(again)
    assert (miss.status, miss.tier, hit.status, hit.tier) == ("miss", None, "hit", "exact")
    assert hit.entry_id == miss.entry_id and hit.similarity == 1.0 and hit.age_seconds >= 0
    assert again.usage.completion_tokens == first.usage.completion_tokens


def test_a_paraphrase_is_a_semantic_hit_within_the_threshold(client, server):
    first = client.chat.completions.create(**ask("What is the capital of France?"))
    near = client.chat.completions.create(**ask("what is the capital of france"))
    info = cache_info(near)
    assert (info.status, info.tier) == ("hit", "semantic") and info.similarity >= 0.9
    assert text_of(near) == text_of(first) and server.chats == 1
    far = client.chat.completions.create(**ask("How tall is the Eiffel tower in metres?"))
    assert cache_info(far).status == "miss" and server.chats == 2


def test_a_raised_threshold_turns_a_semantic_hit_into_a_miss(client, server):
    long = "tell me which city is the capital of france and how many people live in that city"
    client.chat.completions.create(**ask(long))
    near = ask(long + " today")
    info = cache_info(client.chat.completions.create(**near))
    assert info.status == "hit"
    strict = client.chat.completions.create(**near, cache={"threshold": 0.9999,
                                                           "no-store": True})
    assert cache_info(strict).status == "miss" and server.chats == 2


VARIANTS = {
    "model": {"model": "other-model"},
    "system prompt": {"system": "Answer at length."},
    "temperature": {"temperature": 0.2},
    "tools": {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    "extra_body": {"extra_body": {"top_k": 5}},
    "unknown parameter": {"extra_body": {"min_p": 0.1}},
    "seed": {"seed": 7},
}


@pytest.mark.parametrize("change", VARIANTS.values(), ids=VARIANTS.keys())
def test_no_hit_across_what_changes_the_answer(client, server, change):
    client.chat.completions.create(**ask("What is the capital of France?"))
    change = dict(change)
    request = ask("What is the capital of France?", system=change.pop("system", "Answer briefly."))
    request.update(change)
    response = client.chat.completions.create(**request)
    assert cache_info(response).status == "miss" and server.chats == 2
    assert text_of(response).startswith("answer 2")


def test_no_hit_across_earlier_turns(client, server):
    question = {"role": "user", "content": "And what about its population?"}
    turns = [[{"role": "user", "content": "Tell me about Paris."},
              {"role": "assistant", "content": "Paris is the capital of France."}, question],
             [{"role": "user", "content": "Tell me about Rome."},
              {"role": "assistant", "content": "Rome is the capital of Italy."}, question]]
    for messages in turns:
        response = client.chat.completions.create(model="fake-chat", messages=messages)
        assert cache_info(response).status == "miss"
    again = client.chat.completions.create(model="fake-chat", messages=turns[0])
    assert cache_info(again).status == "hit" and server.chats == 2


def test_no_hit_across_namespaces_and_call_namespaces_only_add(openai_client, server):
    embedder = Embedder()
    shared = BinarySemanticCache(BinaryEncoder(embedding_dim=64))
    tenant_a = CachedOpenAI(openai_client, embedder, cache=shared,
                            policy=CachePolicy(namespace="a"))
    tenant_b = CachedOpenAI(openai_client, embedder, cache=shared,
                            policy=CachePolicy(namespace="b"))
    request = ask("What is the capital of France?")
    tenant_a.chat.completions.create(**request)
    assert cache_info(tenant_b.chat.completions.create(**request)).status == "miss"
    per_user = tenant_a.chat.completions.create(**request, cache={"namespace": "user-1"})
    assert cache_info(per_user).status == "miss"
    assert cache_info(tenant_a.chat.completions.create(**request)).status == "hit"
    assert server.chats == 3
    assert len(shared.namespaces()) == 3
    assert tenant_a.clear(namespace="user-1") == 1 and len(shared) == 2
    assert tenant_a.clear() == 1 and len(shared) == 1


@pytest.mark.parametrize("param", [{"user": "u-1"}, {"metadata": {"trace": "x"}},
                                   {"store": False}, {"service_tier": "auto"},
                                   {"timeout": 30}, {"extra_headers": {"X-Trace": "1"}},
                                   {"extra_query": {"trace": "1"}}])
def test_transport_and_bookkeeping_parameters_share_entries(client, server, param):
    client.chat.completions.create(**ask("What is the capital of France?"))
    response = client.chat.completions.create(**ask("What is the capital of France?", **param))
    assert cache_info(response).status == "hit" and server.chats == 1


SKIPS = {
    "length": (("finish", "length"), "length"),
    "content_filter": (("finish", "content_filter"), "content_filter"),
    "no finish_reason": (("finish", None), "no_finish_reason"),
    "tool calls": ("tool_calls", "tool_calls"),
    "empty content": ("empty", "empty"),
}


@pytest.mark.parametrize("action, reason", SKIPS.values(), ids=SKIPS.keys())
def test_answers_that_must_not_be_stored_are_not(client, server, action, reason):
    server.chat_script = [action]
    first = client.chat.completions.create(**ask("What is the capital of France?"))
    assert cache_info(first).reason == reason and cache_info(first).entry_id is None
    second = client.chat.completions.create(**ask("What is the capital of France?"))
    assert cache_info(second).status == "miss" and server.chats == 2
    assert client.stats().skipped_stores == {reason: 1} and client.stats().stores == 1


def test_an_error_from_the_client_is_raised_and_not_stored(client, server):
    server.chat_script = [("status", 429, {"Retry-After": "1"}), ("status", 500, {})]
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**ask("What is the capital of France?"))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**ask("What is the capital of France?"))
    assert len(client.cache) == 0 and client.stats().skipped_stores == {"error": 2}
    ok = client.chat.completions.create(**ask("What is the capital of France?"))
    assert cache_info(ok).status == "miss" and len(client.cache) == 1


def test_tool_calls_are_stored_when_the_policy_allows(openai_client, server):
    client = CachedOpenAI(openai_client, Embedder(), policy=CachePolicy(cache_tool_calls=True))
    server.chat_script = ["tool_calls"]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    first = client.chat.completions.create(**ask("Look up the weather", tools=tools))
    again = client.chat.completions.create(**ask("Look up the weather", tools=tools))
    assert cache_info(again).status == "hit" and server.chats == 1
    assert again.choices[0].finish_reason == "tool_calls"
    got, want = again.choices[0].message.tool_calls[0], first.choices[0].message.tool_calls[0]
    assert (got.id, got.function.name, got.function.arguments) == (
        want.id, want.function.name, want.function.arguments)


BYPASSES = {
    "last message not from the user": ({"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        "last_not_user"),
    "an image": ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
        "non_text_content"),
    "n > 1": ({"n": 2}, "n"),
    "logprobs": ({"logprobs": True}, "logprobs"),
    "too many messages": ({"messages": [{"role": "user", "content": "a"}] * 5}, "max_messages"),
}


@pytest.mark.parametrize("change, reason", BYPASSES.values(), ids=BYPASSES.keys())
def test_bypasses_go_upstream_and_store_nothing(openai_client, server, change, reason):
    embedder = Embedder()
    client = CachedOpenAI(openai_client, embedder, policy=CachePolicy(max_messages=4))
    request = {**ask("What is the capital of France?"), **change}
    for _ in range(2):
        info = cache_info(client.chat.completions.create(**request))
        assert (info.status, info.reason) == ("bypass", reason)
    assert server.chats == 2 and embedder.calls == 0
    assert client.stats().bypasses == {reason: 2} and client.stats().calls == 2
    assert client.cache is None or len(client.cache) == 0


def test_text_parts_are_text(client, server):
    parts = {"role": "user", "content": [{"type": "text", "text": "What is the capital"},
                                         {"type": "text", "text": "of France?"}]}
    for _ in range(2):
        response = client.chat.completions.create(model="fake-chat", messages=[parts])
    assert cache_info(response).status == "hit" and server.chats == 1


def test_no_cache_refreshes_in_place_and_no_store_stores_nothing(client, server):
    first = client.chat.completions.create(**ask("What is the capital of France?"))
    fresh = client.chat.completions.create(**ask("What is the capital of France?"),
                                           cache={"no-cache": True})
    assert cache_info(fresh).status == "miss" and text_of(fresh).startswith("answer 2")
    assert cache_info(fresh).entry_id == cache_info(first).entry_id and len(client.cache) == 1
    again = client.chat.completions.create(**ask("What is the capital of France?"))
    assert text_of(again) == text_of(fresh)
    other = client.chat.completions.create(**ask("Who wrote Hamlet?"), cache={"no-store": True})
    assert cache_info(other).reason == "no_store" and len(client.cache) == 1
    assert client.stats().skipped_stores == {"no_store": 1}


def test_a_per_call_ttl_expires_the_answer(openai_client, server):
    clock = FakeClock()
    cache = BinarySemanticCache(BinaryEncoder(embedding_dim=64), clock=clock)
    client = CachedOpenAI(openai_client, Embedder(), cache=cache,
                          policy=CachePolicy(ttl=3600))
    client.chat.completions.create(**ask("What is the capital of France?"), cache={"ttl": 10})
    client.chat.completions.create(**ask("Who wrote Hamlet?"))
    clock.advance(11)
    assert cache_info(client.chat.completions.create(
        **ask("What is the capital of France?"))).status == "miss"
    assert cache_info(client.chat.completions.create(**ask("Who wrote Hamlet?"))).status == "hit"


@pytest.mark.parametrize("controls, error", [
    ({"no_cache": True}, "unknown cache control 'no_cache'"),
    ({"threshold": 0.5}, "may only raise the policy's 0.9"),
    ({"ttl": -1}, "positive finite number of seconds"),
    ({"no-store": "yes"}, "True or False"),
    ("no-store", "expected cache= as a dict"),
])
def test_bad_controls_raise_before_any_call(client, server, embedder, controls, error):
    with pytest.raises((ValueError, TypeError), match=error):
        client.chat.completions.create(**ask("What is the capital of France?"), cache=controls)
    assert server.chats == 0 and embedder.calls == 0


def test_an_embedder_failure_costs_only_the_lookup(openai_client, server):
    client = CachedOpenAI(openai_client, Embedder(fail=True))
    response = client.chat.completions.create(**ask("What is the capital of France?"))
    assert text_of(response) and cache_info(response).reason == "embedder_error"
    assert client.stats().bypasses == {"embedder_error": 1}


def test_exact_only_without_an_embedder(openai_client, server):
    client = CachedOpenAI(openai_client)
    client.chat.completions.create(**ask("What is the capital of France?"))
    assert cache_info(client.chat.completions.create(
        **ask("What is  the capital of France?"))).tier == "exact"
    assert cache_info(client.chat.completions.create(
        **ask("what is the capital of france"))).status == "miss"
    assert server.chats == 2 and client.cache.max_entries == 10_000


def test_a_cache_made_at_first_use_is_sized_from_the_embedder(client):
    assert client.cache is None
    client.chat.completions.create(**ask("What is the capital of France?"))
    assert client.cache.encoder.embedding_dim == 64 and client.cache.max_entries == 10_000


def test_everything_else_passes_through(client, server):
    vectors = client.embeddings.create(model="fake-embed", input=["hello"])
    assert len(vectors.data[0].embedding) == server.dim
    assert [m.id for m in client.models.list().data] == ["fake-chat", "fake-embed"]
    raw = client.chat.completions.with_raw_response.create(**ask("hi there"))
    assert raw.http_response.status_code == 200 and len(client.cache or ()) == 0
    assert client.api_key == "test-key"


def test_with_options_stays_cached(client, server):
    client.chat.completions.create(**ask("What is the capital of France?"))
    quick = client.with_options(timeout=5)
    assert isinstance(quick, CachedOpenAI) and quick.cache is client.cache
    assert cache_info(quick.chat.completions.create(
        **ask("What is the capital of France?"))).status == "hit"


def test_save_and_load_keep_the_hits(client, server, embedder, tmp_path):
    client.chat.completions.create(**ask("What is the capital of France?"))
    client.cache.save(tmp_path / "llm")
    loaded = BinarySemanticCache.load(tmp_path / "llm")
    again = CachedOpenAI(client._client, embedder=Embedder(), cache=loaded)
    exact = again.chat.completions.create(**ask("What is the capital of France?"))
    near = again.chat.completions.create(**ask("what is the capital of france"))
    assert [cache_info(r).tier for r in (exact, near)] == ["exact", "semantic"]
    assert server.chats == 1


def test_savings_are_counted_at_the_policy_prices(openai_client, server):
    policy = CachePolicy(prices={"fake-chat": (1.0, 2.0)})
    client = CachedOpenAI(openai_client, Embedder(), policy=policy)
    first = client.chat.completions.create(**ask("What is the capital of France?"))
    for _ in range(3):
        client.chat.completions.create(**ask("What is the capital of France?"))
    stats, usage = client.stats(), first.usage
    assert (stats.hits, stats.misses, stats.hit_rate) == (3, 1, 0.75)
    assert stats.prompt_tokens_saved == 3 * usage.prompt_tokens
    assert stats.completion_tokens_saved == 3 * usage.completion_tokens
    want = 3 * (usage.prompt_tokens * 1.0 + usage.completion_tokens * 2.0) / 1e6
    assert stats.dollars_saved == pytest.approx(want)
    assert stats.upstream_seconds_saved > 0 and stats.embedding_calls == 1
    assert stats.lookups[("exact", "hit")] == 3 and stats.lookups[("semantic", "miss")] == 1


def test_cache_info_answers_only_for_its_own_objects(client):
    response = client.chat.completions.create(**ask("What is the capital of France?"))
    assert cache_info(object()) is None
    assert cache_info(response.model_copy()) is None
    assert cache_info(response).status == "miss"


def test_threads_reach_the_upstream_once_per_question(client, server):
    # Questions with no words in common, so no two can meet semantically.
    questions = [f"q{i} {'abcdefghij'[i % 10]}{i} zx{i * 7}" for i in range(50)]
    server.chat_delay = 0.005
    answers, errors = {}, []

    def worker(seed):
        try:
            for j in range(200):
                q = questions[(seed * 13 + j * 7) % 50]
                text = text_of(client.chat.completions.create(**ask(q)))
                answers.setdefault(q, set()).add(text)
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    # Identical requests in flight wait for the first; none of these is a
    # paraphrase of another, so the documented races (paraphrases, streams) do not arise.
    assert server.chats == 50
    assert all(len(texts) == 1 for texts in answers.values())
    assert client.stats().hits == 8 * 200 - 50


def test_bad_arguments_name_what_was_expected(openai_client, monkeypatch):
    with pytest.raises(TypeError, match="embed_text and embed_texts"):
        CachedOpenAI(openai_client, embedder="text-embedding-3-small")
    with pytest.raises(TypeError, match="expected cache as a BinarySemanticCache"):
        CachedOpenAI(openai_client, cache={})
    with pytest.raises(TypeError, match="expected policy as a CachePolicy"):
        CachedOpenAI(openai_client, policy={"ttl": 5})
    monkeypatch.setitem(__import__("sys").modules, "openai", None)
    from binary_semantic_cache import MissingExtraError
    with pytest.raises(MissingExtraError, match=r"binary-semantic-cache\[openai\]"):
        CachedOpenAI(openai_client)


def test_an_oversized_namespace_is_refused_before_the_call(client, server):
    with pytest.raises(ValueError, match="namespace"):
        client.chat.completions.create(**ask("hi"), cache={"namespace": "x" * 10_000})
    assert server.chats == 0 and client.cache is not None and len(client.cache) == 0
