"""OllamaEmbedder with real requests against a loopback Ollama server."""

import asyncio
import sys

import numpy as np
import pytest

requests = pytest.importorskip("requests")

from binary_semantic_cache import (  # noqa: E402
    BackendConnectionError,
    BackendError,
    BinaryEncoder,
    BinarySemanticCache,
    MissingExtraError,
)
from binary_semantic_cache.embeddings import EmbeddingBackend, OllamaEmbedder  # noqa: E402

from .fake_servers import FakeOllama, embed, free_port  # noqa: E402


def expected(texts, dim=768):
    rows = np.stack([embed(t, dim) for t in texts])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_one_request_for_a_batch_and_dimension_learnt():
    with FakeOllama() as server:
        e = OllamaEmbedder(host=server.url)
        texts = ["how do I top up", "card not arrived", "exchange rates"]
        got = e.embed_texts(texts)
        assert got.dtype == np.float32 and np.allclose(got, expected(texts), atol=1e-6)
        assert [r["path"] for r in server.log] == ["/api/embed"]
        assert server.log[0]["input"] == texts and e.embedding_dim == 768
        assert e.embed_text("single").shape == (768,)
        assert isinstance(e, EmbeddingBackend)


def test_dimension_probe_when_asked_first():
    with FakeOllama(dim=384) as server:
        assert OllamaEmbedder(host=server.url).embedding_dim == 384


def test_older_servers_fall_back_to_the_legacy_endpoint():
    with FakeOllama(batch_endpoint=False) as server:
        e = OllamaEmbedder(host=server.url)
        texts = ["one", "two words"]
        assert np.allclose(e.embed_texts(texts), expected(texts), atol=1e-6)
        assert [r["path"] for r in server.log] == ["/api/embed", "/api/embeddings",
                                                   "/api/embeddings"]
        server.log.clear()
        e.embed_text("three")
        assert [r["path"] for r in server.log] == ["/api/embeddings"]


def test_missing_model_says_how_to_pull_it():
    with FakeOllama() as server:
        with pytest.raises(BackendError, match="ollama pull mxbai-embed-large"):
            OllamaEmbedder("mxbai-embed-large", host=server.url).embed_text("x")


def test_model_that_cannot_embed_is_named():
    with FakeOllama() as server:
        with pytest.raises(BackendError, match="cannot make embeddings"):
            OllamaEmbedder("llama3", host=server.url).embed_text("x")


def test_dead_server_says_to_start_ollama():
    port = free_port()
    with pytest.raises(BackendConnectionError, match="ollama serve"):
        OllamaEmbedder(host=f"127.0.0.1:{port}").embed_text("x")


def test_host_from_environment_and_custom_session(monkeypatch):
    with FakeOllama() as server:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{server.port}")

        class Counting(requests.Session):
            posts = 0

            def post(self, *args, **kwargs):
                Counting.posts += 1
                return super().post(*args, **kwargs)

        e = OllamaEmbedder(session=Counting())
        assert e.host == server.url
        e.embed_texts(["a", "b"])
        assert Counting.posts == 1


def test_bad_input_and_empty_batches():
    with FakeOllama() as server:
        e = OllamaEmbedder(host=server.url)
        with pytest.raises(ValueError, match="index 0"):
            e.embed_texts(["   "])
        with pytest.raises(ValueError, match="index 1"):
            e.embed_texts(["ok", b"bytes"])
        assert e.embed_texts([]).shape == (0, 768)


def test_async_twins():
    with FakeOllama() as server:
        e = OllamaEmbedder(host=server.url)
        texts = ["async one", "async two"]
        assert np.allclose(asyncio.run(e.aembed_texts(texts)), expected(texts), atol=1e-6)
        assert asyncio.run(e.aembed_text("x")).shape == (768,)


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "requests", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'binary-semantic-cache\[ollama\]'"):
        OllamaEmbedder()


def test_original_ollama_quick_start_runs_unchanged(monkeypatch):
    with FakeOllama() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        namespace = {}
        exec('''
from binary_semantic_cache import BinarySemanticCache, BinaryEncoder
from binary_semantic_cache.embeddings import OllamaEmbedder

# 1. Setup Local Backend (Requires Ollama running with nomic-embed-text)
embedder = OllamaEmbedder(model_name="nomic-embed-text")

# 2. Initialize Cache (768 dimensions for Nomic)
encoder = BinaryEncoder(embedding_dim=768)
cache = BinarySemanticCache(encoder=encoder)

# 3. Use
vec = embedder.embed_text("Hello Local World")
cache.put(vec, "Stored Locally")
''', namespace)
        cache = namespace["cache"]
        assert isinstance(cache, BinarySemanticCache) and len(cache) == 1
        assert cache.get(namespace["embedder"].embed_text("hello local world!")).response == \
            "Stored Locally"
        assert isinstance(namespace["encoder"], BinaryEncoder)


# ---------------------------------------------------------------- answers that lie, waits that last


@pytest.mark.parametrize("payload, text", [
    ({"model": "m"}, "without 'embeddings'"),
    ([[0.1, 0.2]], "without 'embeddings': \\[\\[0.1, 0.2\\]\\]"),
    ("just text", "without 'embeddings'"),
    ({"embeddings": [[1.0, 2.0], [1.0]]}, "1-d vector for text 1, expected 2"),
    ({"embeddings": [[1.0, [2.0]], [1.0, 2.0]]}, "ragged vector for text 0"),
    ({"embeddings": ["a", "b"]}, "str 'a' for text 0"),
    ({"embeddings": [[1.0, "x"], [1.0, 2.0]]}, "for text 0, expected a flat list of numbers"),
    ({"embeddings": [[1.0, None], [1.0, 2.0]]}, "for text 0, expected a flat list of numbers"),
    ({"embeddings": "abc"}, "answered str 'abc' where a list of 2 vectors"),
    ({"embeddings": [[1.0, 2.0]]}, "1 vectors for 2 texts"),
    ({"embeddings": [[1.0, float("nan")], [1.0, 2.0]]}, "nan in the vector for text 0"),
    ({"embeddings": [[0.0, 0.0], [1.0, 2.0]]}, "all-zero vector for text 0"),
    ({"embeddings": [[], []]}, "expected a flat list of numbers"),
])
def test_odd_answers_are_backend_errors(payload, text):
    with FakeOllama() as server:
        server.script = [("json", payload)]
        with pytest.raises(BackendError, match=text):
            OllamaEmbedder(host=server.url).embed_texts(["one", "two"])


def test_vectors_of_another_length_than_learnt_are_refused():
    with FakeOllama(dim=8) as server:
        e = OllamaEmbedder(host=server.url)
        assert e.embedding_dim == 8
        server.script = [("json", {"embeddings": [[1.0] * 7]})]
        with pytest.raises(BackendError, match="7-d vector for text 0, expected 8"):
            e.embed_text("wrong length")
        assert e.embed_text("fine").shape == (8,)


def test_the_legacy_endpoint_answers_are_checked_too():
    with FakeOllama(batch_endpoint=False) as server:
        server.script = [("json", {"embedding": "not a vector"})]
        with pytest.raises(BackendError, match="str 'not a vector' for text 0"):
            OllamaEmbedder(host=server.url).embed_texts(["one"])


@pytest.mark.parametrize("use_async", [False, True])
def test_a_trickling_answer_is_cut_off_at_max_wait(use_async):
    import time

    with FakeOllama() as server:
        server.script = [("trickle", 0.2)]
        e = OllamaEmbedder(host=server.url, timeout=5.0, max_wait=1.0)
        t0 = time.monotonic()
        with pytest.raises(BackendConnectionError, match="within the call's max_wait=1 s"):
            asyncio.run(e.aembed_text("hi")) if use_async else e.embed_text("hi")
        assert time.monotonic() - t0 < 4.0  # bounded by max_wait, not by the body's 30 s


def test_max_wait_must_be_positive():
    with pytest.raises(ValueError, match="max_wait"):
        OllamaEmbedder(max_wait=0)
