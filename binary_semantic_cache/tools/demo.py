"""``bsc demo``: a semantic cache in front of a simulated support bot.

Offline, on real customer questions (the bundled Banking77 subset): the cache
is filled with answered training questions, then unseen test questions are
replayed. A hit whose cached answer belongs to the question's own intent is a
correct hit; any other hit is a wrong answer served from cache. A miss "calls
the LLM" (the answer of the true intent) and caches the result.
"""

import dataclasses
import time

import numpy as np

from .. import datasets
from ..cache import BinarySemanticCache
from ..encoder import BinaryEncoder
from .progress import progress


def answer(intent):
    return f"[support answer for '{intent}']"


def run(*, threshold=0.80, code_bits=256, seed=42, out=print):
    train, test = datasets.banking77()
    encoder = BinaryEncoder(embedding_dim=train.embeddings.shape[1], code_bits=code_bits,
                            seed=seed)
    cache = BinarySemanticCache(encoder, max_entries=len(train) + len(test),
                                similarity_threshold=threshold)
    warmup = warm_up(encoder, train.embeddings[:2])

    put_times = []
    with progress("caching answers", len(train)) as bar:
        for vec, intent in zip(train.embeddings, train.labels):
            t = time.perf_counter()
            cache.put(vec, answer(intent))
            put_times.append(time.perf_counter() - t)
            bar.update()

    get_times, nearest, examples = [], [], {"correct": [], "wrong": [], "miss": []}
    hits = correct = 0
    with progress("replaying questions", len(test)) as bar:
        for text, vec, intent in zip(test.texts, test.embeddings, test.labels):
            nearest.append(cache.search(vec, k=1)[0])
            t = time.perf_counter()
            hit = cache.get(vec)
            get_times.append(time.perf_counter() - t)
            if hit is None:
                cache.put(vec, answer(intent))
                kind = "miss"
            else:
                hits += 1
                good = hit.response == answer(intent)
                correct += good
                kind = "correct" if good else "wrong"
            examples[kind].append((text, hit))
            bar.update()

    n = len(test)
    stats = cache.stats()
    out(f"\nbinary_semantic_cache demo: Banking77 (CC BY 4.0, PolyAI), all-MiniLM-L6-v2 "
        f"embeddings, {code_bits}-bit codes, threshold {threshold}")
    out(f"  cached questions      {len(train):>8,}   unseen questions {n:,}")
    out(f"  hit rate              {hits / n:>8.1%}")
    out(f"  correct hits          {correct / n:>8.1%}   (of all questions)")
    out(f"  wrong hits            {(hits - correct) / n:>8.1%}   "
        f"(precision {correct / max(hits, 1):.1%})")
    out(f"  get latency p50/p99   {_us(get_times, 50):>8} / {_us(get_times, 99)} us")
    out(f"  put latency p50/p99   {_us(put_times, 50):>8} / {_us(put_times, 99)} us")
    out(f"  index memory / entry  {stats.memory_bytes / cache.max_entries:>8.0f} bytes "
        f"(codes {code_bits // 8} B + metadata), responses aside")
    out(f"  kernel warm-up        {warmup:>8.2f} s   (put, get and search; the first run "
        "compiles, later runs load Numba's on-disk cache)")
    thresholds = _thresholds(nearest, test.labels)
    _print_thresholds(thresholds, out)
    _print_examples(examples, out)
    return {"hit_rate": hits / n, "correct_rate": correct / n,
            "wrong_rate": (hits - correct) / n, "stats": stats, "threshold": threshold,
            "code_bits": code_bits, "warm_up_seconds": warmup,
            "get_us": {"p50": _q(get_times, 50), "p99": _q(get_times, 99)},
            "put_us": {"p50": _q(put_times, 50), "p99": _q(put_times, 99)},
            "bytes_per_entry": stats.memory_bytes / cache.max_entries,
            "other_thresholds": thresholds}


def as_json(result):
    """``run``'s result with the stats as a plain dict."""
    return {**result, "stats": dict(zip(result["stats"].__dataclass_fields__,
                                        dataclasses.astuple(result["stats"])))}


def _q(times, q):
    return float(np.percentile(times, q) * 1e6)


def warm_up(encoder, rows):
    """Seconds to compile (or load from Numba's cache) every kernel a put, get and search use.

    Done on a throwaway cache, so the demo's counters count only the replay.
    """
    t0 = time.perf_counter()
    cache = BinarySemanticCache(encoder, max_entries=4)
    cache.put(rows[0], None)
    cache.put_batch(rows, [None] * len(rows))
    cache.get(rows[0])
    cache.get_batch(rows)
    cache.search(rows[0], k=2)
    return time.perf_counter() - t0


def _us(times, q):
    return f"{np.percentile(times, q) * 1e6:.0f}"


def _thresholds(nearest, labels):
    """Hit rate, correct and wrong shares, precision at other thresholds, on the initial cache."""
    sims = np.array([e.similarity for e in nearest])
    right = np.array([e.response == answer(lab) for e, lab in zip(nearest, labels)])
    rows = []
    for t in (0.70, 0.75, 0.80, 0.85, 0.90, 0.95):
        hit = sims >= t
        rows.append({"threshold": t, "hit_rate": float(hit.mean()),
                     "correct_rate": float((hit & right).mean()),
                     "wrong_rate": float((hit & ~right).mean()),
                     "precision": float((hit & right).sum() / max(hit.sum(), 1))})
    return rows


def _print_thresholds(rows, out):
    out("\n  against the initial cache, other thresholds would give:")
    out("  threshold   hit rate   correct   wrong   precision")
    for r in rows:
        out(f"  {r['threshold']:>9.2f}   {r['hit_rate']:>8.1%}   {r['correct_rate']:>7.1%}   "
            f"{r['wrong_rate']:>5.1%}   {r['precision']:>9.1%}")


def _print_examples(examples, out):
    out("\n  examples:")
    for kind in ("correct", "wrong", "miss"):
        for text, hit in examples[kind][:2]:
            got = "-" if hit is None else f"{hit.response} (similarity {hit.similarity:.2f})"
            out(f"  {kind:>7}: {text[:60]!r} -> {got}")
