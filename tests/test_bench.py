import json
import subprocess
import sys

import numpy as np
import pytest

from binary_semantic_cache._core.jit import BLOCK
from binary_semantic_cache.tools import bench

from .conftest import random_codes


def test_scan_benchmark_checks_agreement_and_reports(capsys):
    results = {"scans": bench.scans(sizes=(1_500, 5_000), n_queries=8)}
    sizes = results["scans"]["sizes"]
    assert sorted(sizes) == [1_500, 5_000]
    for res in sizes.values():
        assert {"numba serial", "numpy", "read roof"} <= set(res["single"])
        assert "numba batch" in res["batch_per_query"]
        for row in res["single"].values():
            assert 0 < row["median_us"] <= row["p99_us"]
    bench.report(results)
    out = capsys.readouterr().out
    assert "numba serial" in out and "faster" in out


def test_disagreeing_method_is_caught():
    methods = {"good": lambda q: q, "bad": lambda q: q + 1}
    with pytest.raises(AssertionError, match="bad disagrees"):
        bench._check(methods, [1, 2], methods["good"], "test")


def test_bsc_bench_writes_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    done = subprocess.run(
        [sys.executable, "-m", "binary_semantic_cache.cli", "bench", "--sizes", "2000",
         "--no-end-to-end", "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert "2000" in data["scans"]["sizes"]
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("n", [0, 1, BLOCK + 5])
def test_stream_xor_matches_naive(n):
    codes = random_codes(np.random.default_rng(n), 3, max(n, 1))
    want = 0
    for w in range(3):
        for j in range(n):
            want ^= int(codes[w, j])
    assert int(bench._stream_xor(codes, n)) == want
    for chunks in (1, 2, 3):
        assert int(bench._stream_xor_parallel(codes, n, chunks)) == want


def test_bit_count_without_numpy_2_matches_a_naive_count(monkeypatch):
    x = random_codes(np.random.default_rng(5), 3, 7)
    want = [[bin(int(v)).count("1") for v in row] for row in x]
    assert bench.bit_count(x).tolist() == want
    monkeypatch.delattr(np, "bitwise_count", raising=False)  # as on NumPy 1.x
    assert bench.bit_count(x).tolist() == want
