"""Embedding backends: anything with this shape feeds a cache.

Neither backend imports its client library until it is built, so
``import binary_semantic_cache`` needs neither openai nor requests.
"""

from typing import Protocol, runtime_checkable

from .ollama_backend import OllamaEmbedder


@runtime_checkable
class EmbeddingBackend(Protocol):
    """What the cache expects of an embedding model.

    ``embed_text(str)`` returns float32 ``(embedding_dim,)`` and
    ``embed_texts(list[str])`` float32 ``(n, embedding_dim)``, L2-normalised,
    in input order; ``aembed_text``/``aembed_texts`` are the async twins.
    """

    @property
    def embedding_dim(self) -> int: ...

    @property
    def model_name(self) -> str: ...

    def embed_text(self, text): ...

    def embed_texts(self, texts): ...

    async def aembed_text(self, text): ...

    async def aembed_texts(self, texts): ...


def __getattr__(name):
    if name == "OpenAIEmbeddingBackend":  # the module imports nothing heavy, but keep it lazy
        from .openai_backend import OpenAIEmbeddingBackend

        return OpenAIEmbeddingBackend
    raise AttributeError(name)


__all__ = ["EmbeddingBackend", "OllamaEmbedder", "OpenAIEmbeddingBackend"]
