"""The harness behind ``evaluate``, ``calibrate`` and ``bsc eval``: replays through caches.

Two kinds of labelled data:

* **clusters** (``.npz`` with ``embeddings``, ``labels`` and ``split`` =
  "train"/"test"): train rows are cached with their label as the answer; each
  test row is looked up, and a hit is correct when the answer's label is its own.
* **pairs** (``.npz`` with ``embeddings_a``, ``embeddings_b``, ``same_answer``,
  optionally ``category``): ``b`` is compared with its own ``a`` only; a hit on a
  pair whose ``same_answer`` is false is a wrong answer.
"""

import time

import numpy as np

from .cache import BinarySemanticCache
from .encoder import BinaryEncoder

THRESHOLDS = np.round(np.arange(0.50, 1.0001, 0.01), 2)

#: (name, code_bits, rescore); code_bits None is exact float cosine.
CONFIGS = [("float cosine", None, None), ("256 bits", 256, None), ("512 bits", 512, None),
           ("1024 bits", 1024, None), ("256 bits + int8", 256, "int8"),
           ("256 bits + float16", 256, "float16"), ("256 bits + float32", 256, "float32")]


def _unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def nearest(stored, queries, *, code_bits, rescore, seed=42, rescore_k=10):
    """Index and similarity of each query's nearest stored row under a configuration."""
    stored, queries = _unit(stored), _unit(queries)
    if code_bits is None:
        sims = queries @ stored.T
        best = sims.argmax(axis=1)
        return best, sims[np.arange(len(queries)), best]
    cache = BinarySemanticCache(BinaryEncoder(stored.shape[1], code_bits, seed),
                                max_entries=max(len(stored), 1), rescore=rescore,
                                rescore_k=rescore_k)
    cache.put_batch(stored, list(range(len(stored))))
    hits = cache.get_batch(queries, threshold=-1.0)  # every lookup returns its nearest
    return (np.array([h.response for h in hits]), np.array([h.similarity for h in hits]))


def pair_similarity(a, b, *, code_bits, rescore, seed=42):
    """Similarity of each ``b[i]`` to its own ``a[i]`` as the configured cache sees it."""
    a, b = _unit(a), _unit(b)
    if code_bits is None:
        return np.einsum("ij,ij->i", a, b)
    sims = np.empty(len(a))
    cache = BinarySemanticCache(BinaryEncoder(a.shape[1], code_bits, seed), max_entries=1,
                                rescore=rescore, rescore_k=1)
    for i in range(len(a)):
        cache.put(a[i], i)  # evicts the previous pair's entry
        sims[i] = cache.search(b[i], k=1)[0].similarity
    return sims


def curve(similarity, correct, n_queries=None):
    """Hit rate, precision, wrong-hit rate, recall and F1 at every threshold."""
    n = len(similarity) if n_queries is None else n_queries
    rows = []
    for t in THRESHOLDS:
        hit = similarity >= t
        hits, right = int(hit.sum()), int((hit & correct).sum())
        precision = right / hits if hits else 1.0
        recall = right / n
        f1 = 2 * precision * recall / (precision + recall) if right else 0.0
        rows.append({"threshold": float(t), "hit_rate": hits / n, "precision": precision,
                     "correct_rate": recall, "wrong_rate": (hits - right) / n, "f1": f1})
    return rows


def threshold_for(rows, target):
    """The least threshold whose precision reaches ``target``, or None."""
    return next((r["threshold"] for r in rows if r["precision"] >= target and r["hit_rate"] > 0),
                None)


def wrong_at_correct(similarity, correct, n_correct):
    """Wrong-hit rate at the highest threshold giving ``n_correct`` correct hits, or None.

    Swept over the similarities themselves, not a grid, so configurations are
    compared at the same correct-hit rate exactly.
    """
    order = np.argsort(-similarity, kind="stable")
    hits_right = np.cumsum(correct[order])
    at = int(np.searchsorted(hits_right, n_correct))
    if at >= len(order):
        return None
    hit = similarity >= similarity[order[at]]  # ties at the threshold hit together
    return float((hit & ~correct).sum() / len(similarity))


def evaluate_clusters(train, test, *, configs=CONFIGS, seed=42, latency_entries=0,
                      rescore_k=10):
    """Replay ``test`` (embeddings, labels) against caches of ``train``; a dict per config."""
    results, raw = {}, {}
    for name, bits, rescore in configs:
        t0 = time.perf_counter()
        best, sims = nearest(train.embeddings, test.embeddings, code_bits=bits, rescore=rescore,
                             seed=seed, rescore_k=rescore_k)
        elapsed = time.perf_counter() - t0
        correct = train.labels[best] == test.labels
        raw[name] = (sims, correct)
        exact = np.einsum("ij,ij->i", _unit(train.embeddings)[best], _unit(test.embeddings))
        rows = curve(sims, correct)
        results[name] = {
            "code_bits": bits, "rescore": rescore, "curve": rows,
            "thresholds_for_precision": {p: threshold_for(rows, p) for p in (0.90, 0.95, 0.99)},
            "best_f1": max(r["f1"] for r in rows),
            "bytes_per_entry": bytes_per_entry(train.embeddings.shape[1], bits, rescore),
            "replay_seconds": elapsed,
            # How far the reported similarity of the chosen entry sits above its
            # true cosine: picking the best of many noisy estimates favours luck.
            "inflation": float(np.mean(sims - exact)),
        }
    if latency_entries:
        timed = {name: (bits, rescore) for name, bits, rescore in configs if bits is not None}
        for name, us in get_latency(train.embeddings, timed, latency_entries, seed).items():
            results[name]["get_us"] = us
    if "float cosine" in raw:
        sims, correct = raw["float cosine"]
        for p in (0.90, 0.95):
            t = results["float cosine"]["thresholds_for_precision"][p]
            hit = sims >= t
            n_correct, ref_wrong = int((hit & correct).sum()), (hit & ~correct).mean()
            for name, (s_, c_) in raw.items():
                wrong = wrong_at_correct(s_, c_, n_correct)
                results[name][f"wrong_at_float_p{round(p * 100)}"] = wrong
                results[name][f"ratio_at_float_p{round(p * 100)}"] = (
                    None if wrong is None or not ref_wrong else wrong / ref_wrong)
    return results


def evaluate_pairs(pairs, *, configs=CONFIGS, seed=42, thresholds=(0.80, 0.85, 0.90, 0.95)):
    """Per category, the share of pairs that would hit at each threshold."""
    categories = pairs["category"] if "category" in pairs else np.array(["all"] * len(
        pairs["same_answer"]))
    out = {}
    for name, bits, rescore in configs:
        sims = pair_similarity(pairs["embeddings_a"], pairs["embeddings_b"], code_bits=bits,
                               rescore=rescore, seed=seed)
        out[name] = {cat: {t: float((sims[categories == cat] >= t).mean()) for t in thresholds}
                     for cat in sorted(set(categories.tolist()))}
    return out


def bytes_per_entry(dim, bits, rescore):
    """Index bytes per entry: the code, 36 of slot metadata and a place in the namespace
    arena (its room to grow aside), plus any rescoring copy; float cosine keeps float32s."""
    if bits is None:
        return 4 * dim
    extra = {None: 0, "int8": dim + 4, "float16": 2 * dim, "float32": 4 * dim}[rescore]
    return bits // 8 + 36 + 4 + extra


def get_latency(stored, configs, entries, seed):
    """Median ``get`` microseconds per configuration, the caches queried in turn."""
    rng = np.random.default_rng(seed)
    base = _unit(stored)
    rows = base[rng.integers(0, len(base), entries)] + 0.05 * rng.standard_normal(
        (entries, base.shape[1])).astype(np.float32)
    caches = {}
    for name, (bits, rescore) in configs.items():
        cache = BinarySemanticCache(BinaryEncoder(base.shape[1], bits, seed),
                                    max_entries=entries, rescore=rescore)
        cache.put_batch(rows, [None] * entries)
        cache.get(rows[0])
        caches[name] = cache
    queries = rows[:200] + 0.02 * rng.standard_normal((200, base.shape[1])).astype(np.float32)
    times = {name: [] for name in caches}
    for q in queries:
        for name, cache in caches.items():
            t0 = time.perf_counter()
            cache.get(q)
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t) * 1e6) for name, t in times.items()}
