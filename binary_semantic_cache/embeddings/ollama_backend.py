"""Embeddings from a local Ollama server over its HTTP API, with ``requests``."""

import os
import time

import numpy as np

from ..errors import BackendConnectionError, BackendError
from ._common import (
    BackendBase,
    Deadline,
    check_max_wait,
    check_texts,
    checked_rows,
    require,
)

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
        Seconds per HTTP read.
    session : requests.Session, optional
        For connection pooling, proxies or custom adapters.
    max_wait : float, default 60.0, keyword-only
        Seconds one ``embed_texts`` call may take in all. A server still
        sending when it passes is left behind with a
        :class:`BackendConnectionError`.
    clock : callable, keyword-only, default ``time.monotonic``
    """

    def __init__(self, model_name="nomic-embed-text", host=None, timeout=30.0, session=None, *,
                 max_wait=60.0, clock=time.monotonic):
        self._requests = require("requests", "ollama")
        host = host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
        if "://" not in host:  # OLLAMA_HOST is often written as host:port
            host = "http://" + host
        self._host = host.rstrip("/")
        self._model, self._timeout = model_name, timeout
        self._max_wait, self._clock = check_max_wait(max_wait), clock
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
        deadline = Deadline(self._max_wait, self._clock, f"Ollama at {self._host}")
        rows = None if self._legacy else self._embed_batch(texts, deadline)
        if rows is None:
            self._legacy = True
            rows = [_field(self._post("/api/embeddings", {"model": self._model, "prompt": t},
                                      deadline), "embedding", "/api/embeddings")
                    for t in texts]
        unit = checked_rows(rows, len(texts), self._dim, "Ollama")
        self._dim = self._dim or unit.shape[1]
        return unit

    async def aembed_texts(self, texts):
        import asyncio

        return await asyncio.to_thread(self.embed_texts, texts)

    def _embed_batch(self, texts, deadline):
        """Rows from ``/api/embed``, or None when the server predates it."""
        try:
            answer = self._post("/api/embed", {"model": self._model, "input": texts}, deadline)
        except _NoSuchEndpoint:
            return None
        return _field(answer, "embeddings", "/api/embed")

    def _call(self, method, route, body, deadline):
        requests = self._requests
        timeout = min(self._timeout, max(0.001, deadline.left()))
        try:
            send = getattr(self._session, method)  # post or get, as a custom session overrides
            return deadline.run(lambda: send(self._host + route, json=body, timeout=timeout))
        except requests.Timeout as exc:
            raise BackendConnectionError(f"Ollama at {self._host} did not answer within "
                                         f"{timeout:g} s") from exc
        except requests.ConnectionError as exc:
            raise BackendConnectionError(f"cannot reach Ollama at {self._host}; start it with "
                                         "`ollama serve`, or set OLLAMA_HOST") from exc

    def _post(self, route, body, deadline):
        response = self._call("post", route, body, deadline)
        if response.status_code == 404:
            if not _is_json(response):  # the router's plain-text 404: no such route
                raise _NoSuchEndpoint(route)
            raise BackendError(f"Ollama has no model {self._model!r}; fetch it with "
                               f"`ollama pull {self._model}`")
        if response.status_code in (400, 500, 501) and _is_json(response) and \
                self._model_exists(deadline) is True:
            raise BackendError(f"Ollama model {self._model!r} cannot make embeddings "
                               f"(HTTP {response.status_code}); use an embedding model such as "
                               "nomic-embed-text")
        if response.status_code != 200:
            raise BackendError(f"Ollama answered HTTP {response.status_code} for {route}: "
                               f"{response.text[:200]}")
        try:
            return response.json()
        except (ValueError, RecursionError):
            raise BackendError(f"Ollama answered {route} with something other than JSON: "
                               f"{response.text[:80]!r}") from None

    def _model_exists(self, deadline):
        """Whether ``/api/tags`` lists the model; None if that cannot be told."""
        try:
            names = {m.get("name") for m in self._call("get", "/api/tags", None, deadline)
                     .json().get("models", [])}
        except (BackendError, ValueError, AttributeError, TypeError):
            return None
        return self._model in names or f"{self._model}:latest" in names


def _field(answer, key, route):
    if not isinstance(answer, dict) or key not in answer:
        text = repr(answer)
        raise BackendError(f"Ollama answered {route} without {key!r}: "
                           f"{text if len(text) <= 80 else text[:77] + '...'}")
    return answer[key]


class _NoSuchEndpoint(Exception):
    pass


def _is_json(response):
    return response.headers.get("content-type", "").startswith("application/json")
