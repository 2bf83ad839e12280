"""``bsc bench`` (LLM row): what CachedOpenAI adds to a hit, beside the cache calls it makes.

A cache holds ``n`` answers in one partition (the worst case for the semantic
scan: every entry is a candidate). Exact hits repeat stored questions;
semantic hits ask unseen questions whose embeddings lie near stored ones, from
an embedder that only looks vectors up, and whose own time is measured apart
and taken off. No request reaches the upstream: every call is a hit.
"""

import numpy as np

from .._optional import require
from ..cache import BinarySemanticCache
from ..encoder import BinaryEncoder
from .bench import _add, _figures, _time_in_random_order, spread
from .progress import progress

QUERIES = 200
ANSWER = "A cached answer of typical length. " * 12
EXACT_BUDGET_US, SEMANTIC_BUDGET_US = 50.0, 150.0


class TableEmbedder:
    """Vectors looked up by text: an embedder that costs next to nothing."""

    model_name = "table"

    def __init__(self, table):
        self.table = table

    def embed_text(self, text):
        return self.table[text]

    def embed_texts(self, texts):
        return [self.table[t] for t in texts]


def request(text):
    return {"model": "gpt-4o-mini", "temperature": 0,
            "messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": text}]}


def prefilled(n=100_000, dim=384, seed=0):
    """``(client, exact requests, semantic requests, core calls)`` over ``n`` stored answers.

    ``core`` maps a name to ``fn(i)``: the bare ``get_exact`` and ``get`` the
    wrapper makes for query ``i``, and the embedder alone.
    """
    openai = require("openai", "openai")
    from ..llm import CachedOpenAI
    from ..llm import keys
    from ..llm.answers import FORMAT
    from ..llm.policy import controls

    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    picks = rng.integers(0, n, QUERIES)
    near = vectors[picks] + 0.05 * rng.standard_normal((QUERIES, dim), dtype=np.float32)
    stored = [f"stored question {i}" for i in range(n)]
    unseen = [f"an unseen paraphrase {i}" for i in range(QUERIES)]
    embedder = TableEmbedder(dict(zip(unseen, near)))
    cache = BinarySemanticCache(BinaryEncoder(dim), max_entries=n)
    # The upstream is never called: every timed request is a hit.
    client = CachedOpenAI(openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="unused",
                                        max_retries=0),
                          embedder=embedder, cache=cache)
    engine = client._engine
    ctl = controls(None, engine.policy)
    wheres = []
    for text in stored:
        params = request(text)
        plan = keys.chat_plan(params, params.pop("messages"), None)
        wheres.append(engine._keyed(plan, ctl, cache))
    namespace = wheres[0].namespace
    record = {"bsc": FORMAT, "id": "chatcmpl-0", "created": 1_700_000_000,
              "model": "gpt-4o-mini", "system_fingerprint": None,
              "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop",
              "usage": {"prompt_tokens": 30, "completion_tokens": 120, "total_tokens": 150},
              "latency": 1.5}
    for lo in range(0, n, 20_000):
        cache.put_batch(vectors[lo:lo + 20_000], [record] * len(vectors[lo:lo + 20_000]),
                        namespace=namespace, keys=[w.key for w in wheres[lo:lo + 20_000]])
    exact = [request(stored[i]) for i in picks]
    semantic = [request(text) for text in unseen]
    threshold = engine.policy.similarity_threshold
    core = {
        "cache.get_exact alone": lambda i: cache.get_exact(wheres[picks[i]].key,
                                                           namespace=namespace),
        "cache.get alone": lambda i: cache.get(near[i], threshold=threshold,
                                               namespace=namespace),
        "embedder alone": lambda i: embedder.embed_text(unseen[i]),
    }
    return client, exact, semantic, core


def measure_llm(*, runs=3, n=100_000, dim=384, seed=0):
    """Median per-call time of exact and semantic hits through CachedOpenAI; a JSON-ready dict."""
    client, exact, semantic, core = prefilled(n, dim, seed)
    create = client.chat.completions.create
    from ..llm import cache_info

    for i in range(QUERIES):  # every timed call below is the hit it claims to be
        if (cache_info(create(**exact[i])).tier, cache_info(create(**semantic[i])).tier) != (
                "exact", "semantic"):
            raise RuntimeError(f"query {i} did not hit as planned; the benchmark is broken")
    methods = {"exact hit via CachedOpenAI": lambda i: create(**exact[i]),
               "semantic hit via CachedOpenAI": lambda i: create(**semantic[i]), **core}
    rng = np.random.default_rng(seed)
    out = {"n": n, "dim": dim, "latency": {}, "overhead_us": {"exact": [], "semantic": []}}
    with progress("LLM wrapper", runs * 3 * QUERIES) as bar:
        for _ in range(runs):
            times = _time_in_random_order(methods, range(QUERIES), 3, rng, bar)
            figures = {name: _figures(t) for name, t in times.items()}
            for name, f in figures.items():
                _add(out["latency"], name, f)
            med = {name: f["median_us"] for name, f in figures.items()}
            out["overhead_us"]["exact"].append(med["exact hit via CachedOpenAI"])
            out["overhead_us"]["semantic"].append(med["semantic hit via CachedOpenAI"]
                                                  - med["embedder alone"])
    return out


def report(s, out=print):
    out(f"\nCachedOpenAI at {s['n']:,} answers in one partition, {s['dim']}-d, 256-bit codes")
    for name, row in s["latency"].items():
        out(f"  {name:<40} {spread(row['median_us']):>22} us")
    for tier, budget in (("exact", EXACT_BUDGET_US), ("semantic", SEMANTIC_BUDGET_US)):
        values = s["overhead_us"][tier]
        verdict = "within" if float(np.median(values)) <= budget else "OVER"
        label = f"wrapper overhead, {tier} hit"
        out(f"  {label:<40} {spread(values):>22} us ({verdict} the {budget:.0f} us budget)")


def main(argv=None):
    """``python -m binary_semantic_cache.tools.bench_llm``: the LLM row alone, as bsc bench has it."""
    import argparse
    import json

    from .bench import machine

    parser = argparse.ArgumentParser(prog="python -m binary_semantic_cache.tools.bench_llm",
                                     description=main.__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    results = {"machine": machine(), "runs": args.runs,
               "llm": measure_llm(runs=args.runs, n=args.entries)}
    report(results["llm"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
