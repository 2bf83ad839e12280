"""Rescoring, evaluation on the bundled data, and threshold calibration."""

import numpy as np
import pytest

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache, calibrate, datasets, quality

from . import naive
from .conftest import check_invariants


@pytest.fixture(scope="module")
def banking():
    return datasets.banking77()


@pytest.mark.parametrize("rescore, tolerance", [("int8", 0.02), ("float16", 2e-3),
                                                ("float32", 1e-5)])
def test_rescored_similarity_is_the_stored_vectors_cosine(banking, rescore, tolerance):
    train, test = banking
    cache = BinarySemanticCache(BinaryEncoder(384), max_entries=5000, rescore=rescore)
    cache.put_batch(train.embeddings, list(range(len(train))))
    for q in test.embeddings[:20]:
        hit = cache.get(q, threshold=-1.0)
        assert hit.similarity == pytest.approx(naive.cosine(train.embeddings[hit.response], q),
                                               abs=tolerance)
        found = cache.search(q, k=5)
        sims = [e.similarity for e in found]
        assert sims == sorted(sims, reverse=True) and found[0].response == hit.response
    per_entry = {"int8": 384 + 4, "float16": 2 * 384, "float32": 4 * 384}[rescore]
    assert cache.stats().memory_bytes == cache._index.capacity * (64 + per_entry)
    check_invariants(cache._index)


def test_rescoring_decides_hits_on_exact_cosine(banking):
    train, test = banking
    codes = BinarySemanticCache(BinaryEncoder(384), max_entries=5000)
    exact = BinarySemanticCache(BinaryEncoder(384), max_entries=5000, rescore="float32",
                                rescore_k=50)
    for cache in (codes, exact):
        cache.put_batch(train.embeddings, list(range(len(train))))
    unit = train.embeddings / np.linalg.norm(train.embeddings, axis=1, keepdims=True)
    for q in test.embeddings[:40]:
        cosines = unit @ (q / np.linalg.norm(q))
        hit = exact.get(q, threshold=0.8)
        assert (hit is not None) == (cosines.max() >= 0.8 + 1e-6) or abs(cosines.max() - 0.8) < 1e-5
        if hit is not None:
            assert hit.response == int(cosines.argmax())


def test_rescored_caches_delete_evict_and_batch(banking):
    train, _ = banking
    cache = BinarySemanticCache(BinaryEncoder(384), max_entries=50, rescore="int8")
    ids = cache.put_batch(train.embeddings[:80], list(range(80)))  # 30 evicted in the batch
    assert sum(i in cache for i in ids) == 50
    assert cache.get(train.embeddings[79]).response == 79
    assert cache.get(train.embeddings[10], threshold=0.99) is None
    assert cache.delete(ids[79])
    assert all(h is None or h.response != 79 for h in cache.get_batch(train.embeddings[75:80]))
    with pytest.raises(ValueError, match="rescore"):
        BinarySemanticCache(BinaryEncoder(384), rescore="int4")


def test_rescored_cache_round_trips_through_save(tmp_path, banking):
    train, test = banking
    cache = BinarySemanticCache(BinaryEncoder(384), max_entries=4000, rescore="int8",
                                rescore_k=7)
    cache.put_batch(train.embeddings, list(range(len(train))))
    cache.save(tmp_path)
    for mmap in (True, False):
        loaded = BinarySemanticCache.load(tmp_path, mmap=mmap)
        assert (loaded.rescore, loaded._rescore_k) == ("int8", 7)
        for q in test.embeddings[:10]:
            assert [(e.response, e.similarity) for e in loaded.search(q, k=3)] == [
                (e.response, e.similarity) for e in cache.search(q, k=3)]


def test_small_eval_orders_rescored_above_codes_only(banking):
    train, test = banking
    configs = [c for c in quality.CONFIGS if c[0] in ("float cosine", "256 bits",
                                                      "256 bits + int8")]
    results = quality.evaluate_clusters(train, test, configs=configs)
    codes, rescored, ref = (results[n] for n in ("256 bits", "256 bits + int8", "float cosine"))
    assert rescored["best_f1"] >= codes["best_f1"]
    assert ref["best_f1"] >= codes["best_f1"]
    p95 = [results[n]["wrong_at_float_p95"] for n in ("256 bits", "256 bits + int8")]
    assert p95[1] <= p95[0]
    for r in results.values():
        precisions = [row["precision"] for row in r["curve"] if row["hit_rate"] > 0.05]
        assert precisions[-1] >= precisions[0]  # stricter thresholds serve fewer wrong answers


def test_pairs_eval_measures_traps():
    pairs = datasets.fow_cache_pairs()
    result = quality.evaluate_pairs(pairs, configs=[("float cosine", None, None),
                                                    ("256 bits", 256, None)])
    for per_cat in result.values():
        assert set(per_cat) == {"paraphrase", "near_repeat", "negation", "entity_swap",
                                "number_date", "scope"}
        for rates in per_cat.values():
            values = list(rates.values())
            assert values == sorted(values, reverse=True)  # higher threshold, fewer hits
        assert per_cat["near_repeat"][0.8] > per_cat["entity_swap"][0.8]


def banking_pairs(banking, n=400, seed=3):
    """Each test question against a training question: half the same intent, half not."""
    train, test = banking
    rng = np.random.default_rng(seed)
    a_rows, same = [], []
    for i in range(n):
        want_same = i % 2 == 0
        pool = np.flatnonzero((train.labels == test.labels[i]) == want_same)
        a_rows.append(train.embeddings[rng.choice(pool)])
        same.append(want_same)
    return np.array(a_rows), test.embeddings[:n], np.array(same)


def test_calibrate_meets_the_target_on_its_pairs(banking):
    a, b, same = banking_pairs(banking)
    encoder = BinaryEncoder(384)
    result = calibrate(a, b, same, encoder=encoder, target_precision=0.9)
    assert result.precision >= 0.9 and 0 < result.recall <= 1
    assert result.threshold == min(t for t, p, r in result.curve if p >= 0.9 and r > 0)
    sims = quality.pair_similarity(a, b, code_bits=256, rescore=None)
    hit = sims >= result.threshold
    assert (hit & same).sum() / hit.sum() == pytest.approx(result.precision)
    looser = calibrate(a, b, same, encoder=encoder, target_precision=0.7)
    assert looser.threshold <= result.threshold and looser.recall >= result.recall
    exact = calibrate(a, b, same, encoder=encoder, target_precision=0.9, rescore="float32")
    unit_a = a / np.linalg.norm(a, axis=1, keepdims=True)
    unit_b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = np.einsum("ij,ij->i", unit_a, unit_b)
    hit = cos >= exact.threshold - 1e-6
    assert (hit & same).sum() / hit.sum() >= 0.9 - 1e-9
    with pytest.raises(ValueError, match="same_answer"):
        calibrate(a, b, np.zeros(len(a)), encoder=encoder)
    with pytest.raises(ValueError, match="shape"):
        calibrate(a[:3], b, same, encoder=encoder)


def test_calibrate_reports_an_unreachable_target():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((40, 32))
    b = a.copy()
    b[:20] += 0.3 * rng.standard_normal((20, 32))  # close paraphrases that should hit
    same = np.arange(40) < 20  # exact repeats with another answer: traps at similarity 1
    result = calibrate(a, b, same, encoder=BinaryEncoder(32), target_precision=0.9)
    assert result.precision < 0.9
    assert result.precision == max(p for _, p, _ in result.curve)


def test_bsc_eval_on_a_user_file(tmp_path, banking, capsys):
    from binary_semantic_cache import cli

    train, test = banking
    path = tmp_path / "mine.npz"
    np.savez(path, embeddings=np.vstack([train.embeddings[:500], test.embeddings[:100]]),
             labels=np.concatenate([train.labels[:500], test.labels[:100]]),
             split=np.array(["train"] * 500 + ["test"] * 100))
    cli.main(["eval", "--data", str(path), "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "256 bits + int8" in out and "float cosine" in out
    assert (tmp_path / "r.json").exists()
