"""What the LLM-layer tests share: a counting embedder and request helpers."""

import threading

import pytest

from .fake_servers import FakeOpenAI, embed


class Embedder:
    """Bag-of-words vectors (see fake_servers.embed), counting calls and the threads they ran on."""

    model_name = "bag-of-words"

    def __init__(self, dim=64, fail=False):
        self.dim, self.fail = dim, fail
        self.calls = 0
        self.threads = []
        self._lock = threading.Lock()

    def embed_text(self, text):
        with self._lock:
            self.calls += 1
            self.threads.append(threading.get_ident())
        if self.fail:
            raise ConnectionError("embedding service down")
        return embed(text, self.dim)

    def embed_texts(self, texts):
        return [self.embed_text(t) for t in texts]


def ask(text, system="Answer briefly.", **params):
    """A chat request's keywords: one system prompt, one user message."""
    return {"model": "fake-chat", "messages": [{"role": "system", "content": system},
                                               {"role": "user", "content": text}], **params}


def text_of(response):
    return response.choices[0].message.content


def streamed_text(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.fixture
def server():
    with FakeOpenAI() as s:
        yield s


@pytest.fixture
def openai_client(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url, api_key="test-key", max_retries=0, timeout=20)
    yield client
    client.close()
