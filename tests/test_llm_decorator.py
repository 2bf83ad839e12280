"""@cached over plain functions, sync and async, and the offline example."""

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache
from binary_semantic_cache.llm import CachePolicy, cached

from .llm_support import Embedder

ROOT = Path(__file__).resolve().parents[1]


def counting(results=None):
    calls = []

    def llm(prompt, **params):
        calls.append((prompt, params))
        return results.pop(0) if results else f"answer {len(calls)} to {prompt}"

    return llm, calls


def test_exact_and_semantic_hits_and_params_in_the_partition():
    embedder = Embedder()
    llm, calls = counting()
    fn = cached(embedder)(llm)
    first = fn("What is the capital of France?", temperature=0)
    assert fn("What is the capital of  France?", temperature=0) == first
    assert embedder.calls == 1
    assert fn("what is the capital of france", temperature=0) == first
    assert fn("What is the capital of France?", temperature=1) != first
    assert len(calls) == 2 and calls[1] == ("What is the capital of France?", {"temperature": 1})
    stats = fn.stats()
    assert (stats.hits, stats.misses) == (2, 2)
    assert stats.lookups[("semantic", "hit")] == 1 and fn.__name__ == "llm"


def test_functions_sharing_a_cache_never_share_answers():
    cache = BinarySemanticCache(BinaryEncoder(embedding_dim=64))
    one, two = counting(), counting()
    shout = cached(Embedder(), cache=cache)(one[0])

    def other(prompt):
        return two[0](prompt)

    whisper = cached(Embedder(), cache=cache)(other)
    shout("hello there"), whisper("hello there")
    assert len(one[1]) == len(two[1]) == 1 and len(cache) == 2
    assert len(cache.namespaces()) == 2


def test_failures_and_non_text_results_are_not_stored():
    llm, calls = counting(results=["", 42, "fine"])
    fn = cached()(llm)
    assert fn("q") == "" and fn("q") == 42 and fn("q") == "fine" and fn("q") == "fine"
    assert fn.stats().skipped_stores == {"empty": 1, "not_text": 1}

    @cached
    def broken(prompt):
        raise RuntimeError("upstream down")

    with pytest.raises(RuntimeError):
        broken("q")
    assert broken.stats().skipped_stores == {"error": 1} and len(broken.cache) == 0


def test_controls_and_bypasses():
    llm, calls = counting()
    fn = cached(policy=CachePolicy(namespace="tenant"))(llm)
    fn("q")
    assert fn("q", cache={"no-cache": True}) == "answer 2 to q" and fn("q") == "answer 2 to q"
    assert fn("q", cache={"namespace": "user"}) == "answer 3 to q"
    assert calls[-1] == ("q", {})  # the controls never reach the function
    assert fn("   ") == "answer 4 to    " and fn(None) == "answer 5 to None"
    assert fn.stats().bypasses == {"empty_prompt": 1, "not_text": 1}
    with pytest.raises(ValueError, match="unknown cache control"):
        fn("q", cache={"refresh": True})
    assert len(calls) == 5


def test_async_functions():
    embedder = Embedder()
    calls = []

    @cached(embedder)
    async def llm(prompt, **params):
        calls.append(prompt)
        await asyncio.sleep(0)
        return f"answer to {prompt}"

    async def main():
        first = await llm("What is the capital of France?")
        second = await llm("what is the capital of france")
        return first, second

    first, second = asyncio.run(main())
    assert first == second and calls == ["What is the capital of France?"]
    assert llm.stats().lookups[("semantic", "hit")] == 1


def test_the_offline_example_runs():
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "cached_offline.py")],
                          capture_output=True, text=True, timeout=300, check=True)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("near_repeat: ") and lines[-1].startswith("LLM calls: ")
    assert "Traceback" not in done.stderr and "embedder failed" not in done.stderr
