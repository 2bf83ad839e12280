"""``@cached`` in front of a stand-in LLM, offline, with the bundled embeddings.

The embedder looks texts up in the bundled fow_cache question pairs
(all-MiniLM-L6-v2 vectors), so no model and no network are needed::

    python examples/cached_offline.py
"""

import unicodedata

from binary_semantic_cache import datasets
from binary_semantic_cache.llm import CachePolicy, cached


def normal(text):
    # The cache hands the embedder the prompt in NFC with whitespace collapsed.
    return " ".join(unicodedata.normalize("NFC", text).split())


class BundledEmbedder:
    """Precomputed embeddings of the bundled question pairs, looked up by text."""

    model_name = "all-MiniLM-L6-v2"

    def __init__(self, pairs):
        self.vectors = {normal(t): v for t, v in zip(pairs["a"], pairs["embeddings_a"])}
        self.vectors.update((normal(t), v) for t, v in zip(pairs["b"], pairs["embeddings_b"]))

    def embed_text(self, text):
        return self.vectors[text]

    def embed_texts(self, texts):
        return [self.vectors[t] for t in texts]


pairs = datasets.fow_cache_pairs()
llm_calls = []


@cached(BundledEmbedder(pairs), policy=CachePolicy(similarity_threshold=0.90))
def answer(prompt, *, style="brief"):
    """Stands in for a paid LLM call."""
    llm_calls.append(prompt)
    return f"a {style} answer to: {prompt}"


def main():
    for category in ("near_repeat", "paraphrase", "negation"):
        rows = pairs["category"] == category
        served = []
        for first, second in zip(pairs["a"][rows].tolist(), pairs["b"][rows].tolist()):
            answer(first)
            if answer(second) != f"a brief answer to: {second}":
                served.append((second, first))
        print(f"{category}: {len(served)} of {int(rows.sum())} second questions served "
              "from the cache")
        if category == "negation" and served:
            second, first = served[0]
            print(f"  e.g. {second!r} got the answer to {first!r}: a wrong answer; raise the "
                  "threshold or use exact keys where that matters")
    answer("How do I renew my passport?", style="detailed")  # another partition: a miss
    stats = answer.stats()
    print(f"LLM calls: {len(llm_calls)} for {stats.calls} questions (hits {stats.hits}, "
          f"misses {stats.misses}); embedder calls: {stats.embedding_calls}")


if __name__ == "__main__":
    main()
