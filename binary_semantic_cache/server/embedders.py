"""The embedders ``--embedder`` names, including the upstream's own ``/embeddings``."""

import contextvars

from .._optional import require
from ..embeddings._common import checked_rows
from ..errors import BackendError

# The caller's Authorization header, for embeddings made on the caller's behalf.
AUTHORIZATION = contextvars.ContextVar("bsc_authorization", default=None)


class UpstreamEmbedder:
    """The upstream's ``/embeddings``, called with the caller's own ``Authorization``."""

    def __init__(self, base_url, model, http):
        self._url, self._model, self._http = base_url + "/embeddings", model, http

    @property
    def model_name(self):
        return self._model

    async def aembed_text(self, text):
        headers = {"Content-Type": "application/json"}
        auth = AUTHORIZATION.get()
        if auth:
            headers["Authorization"] = auth
        response = await self._http.post(self._url, json={"model": self._model, "input": [text]},
                                         headers=headers)
        if response.status_code != 200:
            raise BackendError(f"the upstream's /embeddings answered {response.status_code}: "
                               f"{response.text[:200]}")
        try:
            items = sorted(response.json()["data"], key=lambda item: item.get("index", 0))
            rows = [item["embedding"] for item in items]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackendError("the upstream's /embeddings answered something other than "
                               f"an embeddings list: {response.text[:200]}") from None
        return checked_rows(rows, 1, None, "the upstream's /embeddings")[0]

    def embed_text(self, text):
        raise RuntimeError("UpstreamEmbedder embeds on the proxy's event loop; use aembed_text")

    def embed_texts(self, texts):
        raise RuntimeError("UpstreamEmbedder embeds on the proxy's event loop; use aembed_text")


def make_embedder(spec, upstream, http):
    """The embedder of ``--embedder`` (None for ``none``)."""
    kind, _, model = spec.partition(":")
    if kind == "none":
        return None
    if kind == "upstream":
        return UpstreamEmbedder(upstream, model, http)
    if kind == "ollama":
        from ..embeddings.ollama_backend import OllamaEmbedder

        return OllamaEmbedder(model_name=model)
    require("openai", "openai")
    from ..embeddings.openai_backend import OpenAIEmbeddingBackend

    return OpenAIEmbeddingBackend(model=model)
