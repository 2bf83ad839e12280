"""The LLM layer's figures as bsc_ Prometheus metrics."""

import sys

import pytest

openai = pytest.importorskip("openai")
prometheus_client = pytest.importorskip("prometheus_client")

from binary_semantic_cache import MissingExtraError  # noqa: E402
from binary_semantic_cache.llm import CachedOpenAI, CachePolicy  # noqa: E402

from .llm_support import Embedder, ask, openai_client, server  # noqa: E402,F401


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def test_the_stats_are_scraped_as_bsc_metrics(openai_client, server):
    registry = prometheus_client.CollectorRegistry()
    client = CachedOpenAI(openai_client, Embedder(),
                          policy=CachePolicy(prices={"fake-chat": (1.0, 1.0)}))
    client.register_metrics(registry, labels={"app": "faq"})
    client.chat.completions.create(**ask("What is the capital of France?"))
    client.chat.completions.create(**ask("What is the capital of France?"))
    client.chat.completions.create(**ask("What is the capital of France?", n=2))
    server.chat_script = [("finish", "length")]
    client.chat.completions.create(**ask("Who wrote Hamlet?"))
    stats = client.stats()
    assert sample(registry, "bsc_lookups_total", tier="exact", result="hit", app="faq") == 1
    assert sample(registry, "bsc_lookups_total", tier="semantic", result="miss", app="faq") == 2
    assert sample(registry, "bsc_requests_total", status="bypass", app="faq") == 1
    assert sample(registry, "bsc_bypasses_total", reason="n", app="faq") == 1
    assert sample(registry, "bsc_skipped_stores_total", reason="length", app="faq") == 1
    assert sample(registry, "bsc_tokens_saved_total", kind="completion",
                  app="faq") == stats.completion_tokens_saved > 0
    assert sample(registry, "bsc_dollars_saved_total", app="faq") == pytest.approx(
        stats.dollars_saved)
    assert sample(registry, "bsc_cache_entries", app="faq") == 1
    text = prometheus_client.generate_latest(registry).decode()
    assert "# TYPE bsc_upstream_seconds_saved_total counter" in text


def test_without_the_extra_the_pip_command_is_named(openai_client, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    client = CachedOpenAI(openai_client)
    with pytest.raises(MissingExtraError, match=r"pip install 'binary-semantic-cache\[metrics\]'"):
        client.register_metrics()
