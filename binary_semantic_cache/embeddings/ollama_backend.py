"""Embeddings from a local Ollama server over its HTTP API, with ``requests``."""

import os

import numpy as np

from ..errors import BackendConnectionError, BackendError
from ._common import BackendBase, check_texts, normalised, require

DEFAULT_HOST = "http://localhost:11434"


class OllamaEmbedder(BackendBase):
    """Embeddings from Ollama: one ``POST /api/embed`` for a whole batch.

    Servers older than the batch endpoint are asked text by text through
    ``/api/embeddings`` instead. The vector length is learnt from the first
    answer.

    Parameters
    ----------
    model_name : str, default "nomic-embed-text"
    host : str, optional
        Defaults to ``OLLAMA_HOST``, then ``http://localhost:11434``.
    timeout : float, default 30.0
        Seconds per HTTP request.
    session : requests.Session, optional
        For connection pooling, proxies or custom adapters.
    """

    def __init__(self, model_name="nomic-embed-text", host=None, timeout=30.0, session=None):
        self._requests = require("requests", "ollama")
        host = host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
        if "://" not in host:  # OLLAMA_HOST is often written as host:port
            host = "http://" + host
        self._host = host.rstrip("/")
        self._model, self._timeout = model_name, timeout
        self._session = session or self._requests.Session()
        self._legacy = False
        self._dim = None

    @property
    def host(self):
        return self._host

    def embed_texts(self, texts):
        """L2-normalised float32 rows, shape ``(len(texts), embedding_dim)``, in input order."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.embedding_dim), np.float32)
        rows = None if self._legacy else self._embed_batch(texts)
        if rows is None:
            self._legacy = True
            rows = [self._post("/api/embeddings", {"model": self._model, "prompt": t})["embedding"]
                    for t in texts]
        rows = np.asarray(rows, np.float32)
        if rows.ndim != 2 or rows.shape[0] != len(texts) or rows.shape[1] == 0:
            raise BackendError(f"Ollama answered {rows.shape} embeddings for {len(texts)} texts")
        self._dim = self._dim or rows.shape[1]
        return normalised(rows)

    async def aembed_texts(self, texts):
        import asyncio

        return await asyncio.to_thread(self.embed_texts, texts)

    def _embed_batch(self, texts):
        """Rows from ``/api/embed``, or None when the server predates it."""
        try:
            return self._post("/api/embed", {"model": self._model, "input": texts})["embeddings"]
        except _NoSuchEndpoint:
            return None

    def _post(self, route, body):
        requests = self._requests
        url = self._host + route
        try:
            response = self._session.post(url, json=body, timeout=self._timeout)
        except requests.Timeout as exc:
            raise BackendConnectionError(f"Ollama at {self._host} did not answer within "
                                         f"{self._timeout} s") from exc
        except requests.ConnectionError as exc:
            raise BackendConnectionError(f"cannot reach Ollama at {self._host}; start it with "
                                         "`ollama serve`, or set OLLAMA_HOST") from exc
        if response.status_code == 404:
            if not _is_json(response):  # the router's plain-text 404: no such route
                raise _NoSuchEndpoint(route)
            raise BackendError(f"Ollama has no model {self._model!r}; fetch it with "
                               f"`ollama pull {self._model}`")
        if response.status_code in (400, 500, 501) and _is_json(response) and \
                self._model_exists() is True:
            raise BackendError(f"Ollama model {self._model!r} cannot make embeddings "
                               f"(HTTP {response.status_code}); use an embedding model such as "
                               "nomic-embed-text")
        if response.status_code != 200:
            raise BackendError(f"Ollama answered HTTP {response.status_code} for {route}: "
                               f"{response.text[:200]}")
        try:
            return response.json()
        except ValueError:
            raise BackendError(f"Ollama answered {route} with something other than JSON") \
                from None

    def _model_exists(self):
        """Whether ``/api/tags`` lists the model; None if that cannot be told."""
        try:
            response = self._session.get(self._host + "/api/tags", timeout=self._timeout)
            names = {m.get("name") for m in response.json().get("models", [])}
        except (self._requests.RequestException, ValueError, AttributeError):
            return None
        return self._model in names or f"{self._model}:latest" in names


class _NoSuchEndpoint(Exception):
    pass


def _is_json(response):
    return response.headers.get("content-type", "").startswith("application/json")
