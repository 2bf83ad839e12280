"""Answer quality: replay labelled questions through caches, and calibrate thresholds.

Two kinds of labelled data:

* **clusters** (``.npz`` with ``embeddings``, ``labels`` and ``split`` =
  "train"/"test"): train rows are cached with their label as the answer; each
  test row is looked up, and a hit is correct when the answer's label is its own.
* **pairs** (``.npz`` with ``embeddings_a``, ``embeddings_b``, ``same_answer``,
  optionally ``category``): ``b`` is compared with its own ``a`` only; a hit on a
  pair whose ``same_answer`` is false is a wrong answer.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from .cache import BinarySemanticCache
from .encoder import BinaryEncoder

THRESHOLDS = np.round(np.arange(0.50, 1.0001, 0.01), 2)

#: (name, code_bits, rescore); code_bits None is exact float cosine.
CONFIGS = [("float cosine", None, None), ("256 bits", 256, None), ("512 bits", 512, None),
           ("1024 bits", 1024, None), ("256 bits + int8", 256, "int8"),
           ("256 bits + float16", 256, "float16"), ("256 bits + float32", 256, "float32")]


@dataclass(frozen=True)
class CalibrationResult:
    """The least threshold meeting a precision target, and the curve behind it.

    ``curve`` holds ``(threshold, precision, recall)`` for every threshold
    tried. When no threshold reaches the target, ``threshold`` is the one with
    the best precision, and ``precision`` shows the shortfall.
    """

    threshold: float
    precision: float
    recall: float
    curve: list = field(repr=False)


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
            "bytes_per_entry": _bytes_per_entry(train.embeddings.shape[1], bits, rescore),
            "replay_seconds": elapsed,
            # How far the reported similarity of the chosen entry sits above its
            # true cosine: picking the best of many noisy estimates favours luck.
            "inflation": float(np.mean(sims - exact)),
        }
    if latency_entries:
        timed = {name: (bits, rescore) for name, bits, rescore in configs if bits is not None}
        for name, us in _get_latency(train.embeddings, timed, latency_entries, seed).items():
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


def calibrate(embeddings_a, embeddings_b, same_answer, *, encoder, target_precision=0.95,
              rescore=None):
    """The least threshold at which a cache's hits reach ``target_precision``.

    Each ``b[i]`` is compared with its own ``a[i]`` exactly as a cache built
    with ``encoder`` and ``rescore`` compares them (estimated cosine of the
    codes, or exact cosine of the stored copy), so the threshold fits that
    configuration: a float-cosine threshold does not carry over to codes. A
    hit is correct when ``same_answer[i]``; recall counts correct hits over
    the pairs that should hit. In a full cache a query meets its nearest of
    many entries, which pushes similarities up: ``bsc eval`` measures that.

    Parameters
    ----------
    embeddings_a, embeddings_b : array_like, shape (n, dim)
    same_answer : array_like of bool, shape (n,)
    encoder : BinaryEncoder
    target_precision : float, default 0.95
    rescore : None, "int8", "float16" or "float32"

    Returns
    -------
    CalibrationResult
    """
    a, b = np.asarray(embeddings_a), np.asarray(embeddings_b)
    same = np.asarray(same_answer, bool)
    if not (a.ndim == b.ndim == 2 and a.shape == b.shape and same.shape == (a.shape[0],)):
        raise ValueError(f"expected embeddings_a and embeddings_b of one shape (n, dim) and "
                         f"same_answer of shape (n,), got {a.shape}, {b.shape}, {same.shape}")
    if not isinstance(encoder, BinaryEncoder):
        raise TypeError(f"expected encoder as a BinaryEncoder, got {type(encoder).__name__}")
    if not 0 < target_precision <= 1:
        raise ValueError(f"expected target_precision in (0, 1], got {target_precision}")
    if not same.any():
        raise ValueError("expected some pairs with same_answer true; without them no threshold "
                         "can be told apart from another")
    sims = pair_similarity(a, b, code_bits=encoder.code_bits, rescore=rescore,
                           seed=encoder.seed)
    points = []
    for t in np.unique(np.concatenate([sims, [1.0]])):
        hit = sims >= t
        right = int((hit & same).sum())
        precision = right / int(hit.sum()) if hit.any() else 1.0
        points.append((float(t), float(precision), right / int(same.sum())))
    meeting = [p for p in points if p[1] >= target_precision and p[2] > 0]
    chosen = meeting[0] if meeting else max(points, key=lambda p: (p[1], p[2]))
    return CalibrationResult(*chosen, curve=points)


def _bytes_per_entry(dim, bits, rescore):
    if bits is None:
        return 4 * dim
    extra = {None: 0, "int8": dim + 4, "float16": 2 * dim, "float32": 4 * dim}[rescore]
    return bits // 8 + 32 + extra


def _get_latency(stored, configs, entries, seed):
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
