"""Rescoring, evaluation on the bundled data, and threshold calibration."""

import numpy as np
import pytest

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache, calibrate, datasets
from binary_semantic_cache import _quality as quality
from binary_semantic_cache import evaluate, EvaluationResult, MissingExtraError

from . import naive

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
    idx = cache._index
    assert cache.stats().memory_bytes == idx.capacity * (68 + per_entry) + (
        4 * idx.seg[0].size + 12 * idx.namespace_slots)
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
        assert per_cat["near_repeat"][0.8] > per_cat["entity_swap"][0.8]
    # Against references computed here: cosines, and codes made by the naive encoder.
    a, b = pairs["embeddings_a"].astype(np.float64), pairs["embeddings_b"].astype(np.float64)
    cos = np.einsum("ij,ij->i", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    planes = BinaryEncoder(a.shape[1], 256, 42)._planes.astype(np.float64)
    est = np.array([np.cos(np.pi * naive.hamming(naive.encode(x, planes), naive.encode(y, planes))
                           / 256) for x, y in zip(a, b)])
    for name, sims in (("float cosine", cos), ("256 bits", est)):
        for cat, rates in result[name].items():
            mine = pairs["category"] == cat
            for t, share in rates.items():
                assert share == pytest.approx(float((sims[mine] >= t - 1e-9).mean()), abs=0.02)


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


def test_evaluate_on_user_data_gives_a_table_curves_and_a_titled_plot(banking):
    train, test = banking
    result = evaluate(train.embeddings[:800], train.labels[:800], test.embeddings[:200],
                      test.labels[:200], name="my support desk",
                      configs=[("float cosine", None, None), ("256 bits", 256, None)])
    assert isinstance(result, EvaluationResult) and "my support desk" in repr(result)
    table = result.table()
    assert [row["configuration"] for row in table] == ["float cosine", "256 bits"]
    assert table[0]["bytes_per_entry"] == 4 * 384 and table[1]["bytes_per_entry"] == 72
    assert table[0]["ratio_at_float_p90"] in (None, 1.0)
    rows = result.curve("256 bits")
    assert rows[0]._fields == ("threshold", "hit_rate", "precision", "correct_rate",
                               "wrong_rate", "f1")
    # The exact-cosine hit rate at a threshold, from the data directly.
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    best = (unit(test.embeddings[:200]) @ unit(train.embeddings[:800]).T).max(axis=1)
    at = next(r for r in result.curve("float cosine") if r.threshold == 0.8)
    assert at.hit_rate == pytest.approx(float((best >= 0.8 - 1e-6).mean()), abs=0.01)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtraError, match="pip install pandas"):
            result.to_frame()
    else:
        assert list(result.to_frame().index) == ["float cosine", "256 bits"]
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    ax = result.plot()
    assert ax.get_title().startswith("my support desk:") and len(ax.get_lines()) == 2


def test_evaluate_names_bad_shapes():
    with pytest.raises(ValueError, match=r"stored as a non-empty \(n, dim\) array with n labels"):
        evaluate(np.ones((3, 4)), [1, 2], np.ones((2, 4)), [1, 2])
    with pytest.raises(ValueError, match="one dimension, got 4 and 5"):
        evaluate(np.ones((3, 4)), [1, 2, 3], np.ones((2, 5)), [1, 2])
