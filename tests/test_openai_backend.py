"""OpenAIEmbeddingBackend with the real openai client against a loopback server."""

import asyncio
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("openai")

from binary_semantic_cache import (  # noqa: E402
    BackendAuthError,
    BackendConnectionError,
    BackendError,
    BackendRateLimitError,
    MissingExtraError,
)
from binary_semantic_cache.embeddings import openai_backend  # noqa: E402
from binary_semantic_cache.embeddings.openai_backend import OpenAIEmbeddingBackend  # noqa: E402

from .conftest import FakeClock  # noqa: E402
from .fake_servers import FakeOpenAI, embed, free_port  # noqa: E402


@pytest.fixture
def server():
    with FakeOpenAI() as s:
        yield s


class Waits:
    """Records requested sleeps instead of sleeping."""

    def __init__(self):
        self.calls = []

    def __call__(self, seconds):
        self.calls.append(round(seconds, 6))

    async def asleep(self, seconds):
        self.calls.append(round(seconds, 6))


def backend(server, waits=None, **kwargs):
    waits = waits or Waits()
    kwargs.setdefault("clock", FakeClock(0.0))
    return OpenAIEmbeddingBackend(api_key="sk-test", base_url=server.url, sleep=waits,
                                  asleep=waits.asleep, rng=lambda: 0.0, **kwargs)


def expected(texts, dim=1536):
    rows = np.stack([embed(t, dim) for t in texts])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_vectors_in_order_normalised_and_priced(server):
    texts = [f"question number {i} about cards" for i in range(10)]
    b = backend(server)
    got = b.embed_texts(texts)
    assert got.dtype == np.float32 and got.shape == (10, 1536)
    assert np.allclose(got, expected(texts), atol=1e-6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    assert b.embedding_dim == 1536 and b.model_name == "text-embedding-3-small"
    one = b.embed_text("hello there")
    assert one.shape == (1536,)
    stats = b.get_stats()
    tokens = 10 * 5 + 2
    assert (stats["requests"], stats["http_attempts"], stats["tokens"], stats["texts"]) == (
        2, 2, tokens, 11)
    assert stats["cost_usd"] == pytest.approx(tokens * 0.02 / 1e6)
    assert [len(r["input"]) for r in server.log] == [10, 1]
    assert server.log[0]["model"] == "text-embedding-3-small"
    b.reset_stats()
    assert b.get_stats()["requests"] == 0 and b.get_stats()["cost_usd"] == 0


def test_out_of_order_answers_come_back_in_input_order(server):
    server.script = ["shuffle"]
    texts = ["alpha", "beta gamma", "delta", "epsilon zeta eta"]
    assert np.allclose(backend(server).embed_texts(texts), expected(texts), atol=1e-6)


def test_batches_respect_input_and_token_limits(server, monkeypatch):
    b = backend(server)
    b.embed_texts([f"t{i}" for i in range(5000)])
    assert [len(r["input"]) for r in server.log] == [2048, 2048, 904]
    server.log.clear()
    monkeypatch.setattr(openai_backend, "MAX_TOKENS_PER_REQUEST", 30)
    b.embed_texts(["x" * 40] * 5)  # 10 estimated tokens each: 3 fit a request
    assert [len(r["input"]) for r in server.log] == [3, 2]


def test_retry_after_is_honoured_on_429(server):
    server.script = [("status", 429, {"Retry-After": "7"}), "ok"]
    waits = Waits()
    b = backend(server, waits)
    assert b.embed_text("hi").shape == (1536,)
    assert waits.calls == [7.0] and len(server.log) == 2
    assert b.get_stats()["retries"] == 1 and b.get_stats()["http_attempts"] == 2


def test_server_errors_back_off_exponentially(server):
    server.script = [("status", 500, {}), ("status", 503, {}), ("status", 502, {}), "ok"]
    waits = Waits()
    backend(server, waits).embed_text("hi")
    # rng() == 0: half of 0.5 * 2**attempt
    assert waits.calls == [0.25, 0.5, 1.0] and len(server.log) == 4


def test_stalled_response_times_out_and_is_retried(server):
    server.script = [("stall", 2.0), "ok"]
    waits = Waits()
    b = backend(server, waits, timeout=0.3)
    assert b.embed_text("slow").shape == (1536,)
    assert len(waits.calls) == 1 and b.get_stats()["http_attempts"] == 2


def test_gives_up_after_the_last_retry_with_a_clear_error(server):
    server.script = [("status", 429, {"Retry-After": "1"})] * 3
    with pytest.raises(BackendRateLimitError, match="after 3 attempts"):
        backend(server, max_retries=2).embed_text("hi")
    assert len(server.log) == 3  # the client's own retries are off


@pytest.mark.parametrize("status, error", [(401, BackendAuthError), (403, BackendAuthError),
                                           (400, BackendError), (404, BackendError)])
def test_client_errors_are_not_retried(server, status, error):
    server.script = [("status", status, {})]
    with pytest.raises(error, match=f"HTTP {status}"):
        backend(server).embed_text("hi")
    assert len(server.log) == 1


def test_unreachable_server_is_a_connection_error():
    port = free_port()
    waits = Waits()
    b = OpenAIEmbeddingBackend(api_key="sk-test", base_url=f"http://127.0.0.1:{port}/v1",
                               max_retries=2, sleep=waits, rng=lambda: 0.0)
    with pytest.raises(BackendConnectionError, match="after 3 attempts"):
        b.embed_text("hi")
    assert waits.calls == [0.25, 0.5]


def test_request_and_token_budgets_make_the_caller_wait(server):
    clock, waits = FakeClock(0.0), Waits()
    b = backend(server, waits, rpm_limit=2, clock=clock)
    for _ in range(3):
        b.embed_text("one")
    assert waits.calls == [30.0]  # the third request in a minute of 2
    waits.calls.clear()
    b = backend(server, waits, tpm_limit=120, clock=FakeClock(0.0))
    b.embed_texts(["x" * 400])  # 100 estimated tokens
    b.embed_texts(["x" * 400])
    assert waits.calls == [40.0]  # 80 tokens short at 2 tokens a second


def test_dimensions_pass_through(server):
    b = backend(server, dimensions=256)
    assert b.embed_text("short vectors").shape == (256,) and b.embedding_dim == 256
    assert server.log[0]["dimensions"] == 256
    with pytest.raises(ValueError, match="text-embedding-3"):
        backend(server, model="text-embedding-ada-002", dimensions=256)


def test_empty_and_bad_input(server):
    b = backend(server)
    assert b.embed_texts([]).shape == (0, 1536)
    assert server.log == []
    with pytest.raises(ValueError, match="index 1"):
        b.embed_texts(["fine", ""])
    with pytest.raises(ValueError, match="index 2"):
        b.embed_texts(["a", "b", 3])
    with pytest.raises(ValueError, match="list of strings"):
        b.embed_texts("one string")
    with pytest.raises(ValueError, match="string"):
        b.embed_text(None)


def test_prices_can_be_overridden_and_unknown_models_cost_none(server):
    b = backend(server, prices={"text-embedding-3-small": 1.0})
    b.embed_text("one two")
    assert b.get_stats()["cost_usd"] == pytest.approx(2 / 1e6)
    b = backend(server, model="my-local-model")
    b.embed_text("one")
    assert b.get_stats()["cost_usd"] is None and b.embedding_dim == 1536


def test_async_twins_retry_with_the_injected_sleep(server):
    server.script = [("status", 429, {"Retry-After": "3"}), "shuffle"]
    waits = Waits()
    b = backend(server, waits)
    texts = ["first text", "second one", "third"]
    got = asyncio.run(b.aembed_texts(texts))
    assert np.allclose(got, expected(texts), atol=1e-6) and waits.calls == [3.0]
    assert asyncio.run(b.aembed_text("solo")).shape == (1536,)


def test_key_and_url_come_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    OpenAIEmbeddingBackend().embed_text("from the environment")
    assert len(server.log) == 1
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(BackendAuthError, match="OPENAI_API_KEY"):
        OpenAIEmbeddingBackend()


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'binary-semantic-cache\[openai\]'"):
        OpenAIEmbeddingBackend(api_key="sk-test")


def test_plain_import_loads_no_client_library():
    code = ("import sys, binary_semantic_cache, binary_semantic_cache.embeddings; "
            "print(sorted(m for m in ('openai', 'requests', 'httpx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


ORIGINAL_QUICK_START = '''
import os
from binary_semantic_cache import BinarySemanticCache, BinaryEncoder
from binary_semantic_cache.embeddings.openai_backend import OpenAIEmbeddingBackend

# 1. Setup Backend (Tier 1 rate limits default)
os.environ["OPENAI_API_KEY"] = "sk-..."
backend = OpenAIEmbeddingBackend(model="text-embedding-3-small")

# 2. Initialize Cache (1536 dimensions for OpenAI)
encoder = BinaryEncoder(embedding_dim=1536, code_bits=256)
cache = BinarySemanticCache(encoder=encoder, max_entries=10000)

# 3. Use
query = "What is the capital of France?"
embedding = backend.embed_text(query)

# Check Cache
if hit := cache.get(embedding):
    print(f"✅ HIT: {hit.response}")
else:
    # Call LLM (Simulated)
    response = "Paris"
    cache.put(embedding, response)
    print(f"❌ MISS: Cached '{response}'")
'''


def test_original_quick_start_runs_unchanged_and_hits_a_paraphrase(server, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "unset")
    namespace = {}
    exec(ORIGINAL_QUICK_START, namespace)
    assert capsys.readouterr().out.strip() == "❌ MISS: Cached 'Paris'"
    use = ORIGINAL_QUICK_START.split("# 3. Use")[1].replace(
        "What is the capital of France?", "what is the capital city of france")
    exec(use, namespace)
    assert capsys.readouterr().out.strip() == "✅ HIT: Paris"
    assert len(server.log) == 2


# ---------------------------------------------------------------- answers that lie, waits that last


def answer(*vectors, indexes=None):
    """An embeddings response holding exactly ``vectors`` (lists, or strings as given)."""
    data = [{"object": "embedding", "index": i if indexes is None else indexes[i],
             "embedding": v if isinstance(v, str) else [float(x) for x in v]}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": "m",
            "usage": {"prompt_tokens": 1, "total_tokens": 1}}


GOOD = np.ones(1536)


@pytest.mark.parametrize("payload, n, text", [
    (answer(np.ones(7)), 1, "7-d vector for text 0, expected 1536"),
    (answer(GOOD, np.ones(1535)), 2, "1535-d vector for text 1"),
    (answer(np.r_[np.nan, np.ones(1535)]), 1, "nan in the vector for text 0"),
    (answer(GOOD, np.r_[np.ones(1535), np.inf]), 2, "inf in the vector for text 1"),
    (answer(np.zeros(1536)), 1, "all-zero vector for text 0"),
    (answer(GOOD), 2, r"indexes \[0\] for 2 inputs"),
    (answer(GOOD, GOOD, indexes=[0, 0]), 2, r"indexes \[0, 0\]"),
    (answer("not base64!"), 1, "not base64"),
    (answer("AAAAAAA="), 1, "5 bytes for input 0"),
    ({"object": "list", "data": None, "model": "m"}, 1, "without a list of embeddings"),
])
def test_vectors_no_cache_can_use_are_backend_errors(server, payload, n, text):
    server.script = [("json", payload)]
    with pytest.raises(BackendError, match=text):
        backend(server).embed_texts(["a", "b"][:n])


def test_a_batch_of_another_length_than_the_first_is_refused(server):
    b = backend(server, model="my-local-model")  # length learnt from the first answer
    b.embed_text("first")
    server.script = [("json", answer(np.ones(1024)))]
    with pytest.raises(BackendError, match="1024-d vector for text 0, expected 1536"):
        b.embed_text("second")


class ClockedWaits(Waits):
    """Sleeps that move the backend's fake clock, so deadlines see the time pass."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def __call__(self, seconds):
        super().__call__(seconds)
        self.clock.advance(seconds)


def test_a_retry_after_past_max_wait_raises_without_waiting(server):
    server.script = [("status", 429, {"Retry-After": "600"})]
    waits = Waits()
    with pytest.raises(BackendRateLimitError, match="600 s, past the call's max_wait=60 s"):
        backend(server, waits).embed_text("hi")
    assert waits.calls == [] and len(server.log) == 1


def test_retry_sleeps_add_up_to_at_most_max_wait(server):
    clock = FakeClock(0.0)
    waits = ClockedWaits(clock)
    server.script = [("status", 429, {"Retry-After": "20"})] * 2 + ["ok"]
    assert backend(server, waits, clock=clock).embed_text("hi").shape == (1536,)
    assert waits.calls == [20.0, 20.0]
    server.script = [("status", 503, {"Retry-After": "25"})] * 3
    waits.calls.clear()
    with pytest.raises(BackendError, match=r"25 s, past the call's max_wait=60 s \(10 s left\)"):
        backend(server, waits, clock=clock).embed_text("hi")
    assert waits.calls == [25.0, 25.0]


def test_max_wait_spans_every_batch_of_a_call(server, monkeypatch):
    monkeypatch.setattr(openai_backend, "MAX_INPUTS_PER_REQUEST", 1)
    clock = FakeClock(0.0)
    waits = ClockedWaits(clock)
    server.script = ["ok", ("status", 429, {"Retry-After": "40"}), "ok",
                     ("status", 429, {"Retry-After": "30"})]
    with pytest.raises(BackendRateLimitError, match=r"30 s, past .* \(20 s left\)"):
        backend(server, waits, clock=clock).embed_texts(["a", "b", "c"])
    assert waits.calls == [40.0] and len(server.log) == 4


def test_a_budget_wait_past_max_wait_raises_and_gives_the_budget_back(server):
    b = backend(server, rpm_limit=1, max_wait=10)  # the next request would wait 60 s
    b.embed_text("one")
    with pytest.raises(BackendRateLimitError, match="rpm_limit/tpm_limit budget asks to wait 60"):
        b.embed_text("two")
    with pytest.raises(BackendRateLimitError, match="wait 60 s"):  # not 120: nothing was booked
        b.embed_text("three")


@pytest.mark.parametrize("use_async", [False, True])
def test_a_trickling_answer_is_cut_off_at_max_wait(server, use_async):
    import time

    server.script = [("trickle", 0.2)]  # ~30 KB at 5 bytes a second; each read is quick
    b = OpenAIEmbeddingBackend(api_key="sk-test", base_url=server.url, max_wait=1.0,
                               timeout=5.0, max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(BackendConnectionError, match="within the call's max_wait=1 s"):
        asyncio.run(b.aembed_text("hi")) if use_async else b.embed_text("hi")
    assert time.monotonic() - t0 < 4.0  # bounded by max_wait, not by the 30 s the body takes


def test_max_wait_must_be_positive(server):
    for bad in (0, -1, float("inf"), "60"):
        with pytest.raises(ValueError, match="max_wait"):
            backend(server, max_wait=bad)
