import json
import re
import subprocess
import sys

import numpy as np
import pytest

from binary_semantic_cache._core.jit import BLOCK
from binary_semantic_cache.tools import bench

from .conftest import random_codes


def test_scan_benchmark_runs_like_with_like_and_reports_spreads(capsys):
    results = bench.run((1_500, 5_000), runs=2, end_to_end=False)
    sizes = results["scans"]
    assert sorted(sizes, key=int) == ["1500", "5000"]
    for n, res in sizes.items():
        assert res["bytes"] == int(n) * 32 and res["memory_roof"] is False
        assert {"numba serial", "numpy", "read roof serial"} <= set(res["single"])
        for row in res["single"].values():
            assert len(row["median_us"]) == 2  # one figure per run
            assert all(c >= bench.MIN_CALLS for c in row["calls"])
            # p99 only where enough calls were made to mean it.
            assert (row["p99_us"][0] is None) == (row["calls"][0] < bench.P99_CALLS)
    bench.check(results)
    bench.report(results)
    out = capsys.readouterr().out
    assert "numba serial" in out and "the serial read roof (cache-resident) speed" in out
    assert "2 runs (median, range over runs)" in out


def test_a_scan_faster_than_its_own_roof_fails_the_run():
    row = lambda us: {"fastest_us": [us], "median_us": [us]}  # noqa: E731
    results = {"scans": {"100": {"single": {"numba serial": row(5.0),
                                            "read roof serial": row(4.0),
                                            "numba parallel": row(3.0),
                                            "read roof parallel": row(3.5)}}}}
    with pytest.raises(bench.BenchmarkError, match="numba parallel took 3.0 us, less than"):
        bench.check(results)
    # Memory-bound: both run at the memory's speed, and 1% below the roof is chance...
    near = {"numba serial": row(99.0), "read roof serial": row(100.0)}
    bench.check({"scans": {"10000000": {"memory_roof": True, "single": near}}})
    # ...but not when the codes fit in the cache, nor 3% below it in memory.
    with pytest.raises(bench.BenchmarkError, match="numba serial took 99.0 us"):
        bench.check({"scans": {"1000": {"memory_roof": False, "single": near}}})
    far = {"numba serial": row(97.0), "read roof serial": row(100.0)}
    with pytest.raises(bench.BenchmarkError, match="numba serial took 97.0 us"):
        bench.check({"scans": {"10000000": {"memory_roof": True, "single": far}}})


def test_disagreeing_method_is_caught():
    methods = {"good": lambda q: q, "bad": lambda q: q + 1}
    with pytest.raises(bench.BenchmarkError, match="bad disagrees"):
        bench._check(methods, [1, 2], methods["good"], "test")


def test_spread_and_speed_figures():
    assert bench.spread([3.0, 1.0, 2.0]) == "2.0 (1.0-3.0)"
    assert bench.spread([7.25]) == "7.2" and bench.spread([None]) == "-"
    assert bench.gbps(32_000_000, [1000.0]) == [32.0]


@pytest.mark.parametrize("args, text", [
    (["bench", "--sizes", "-5"], "--sizes: expected sizes of at least 1 code"),
    (["bench", "--sizes", "0"], "--sizes: expected sizes of at least 1 code"),
    (["bench", "--sizes", "abc"], "--sizes: expected comma-separated whole numbers"),
    (["bench", "--runs", "0"], "--runs: expected a whole number >= 1"),
    (["eval", "--latency-entries", "-5"], "--latency-entries: expected a whole number >= 0"),
    (["demo", "--threshold", "1.5"], "--threshold: expected a number in \\[-1, 1\\]"),
    (["demo", "--bits", "100"], "--bits: expected a multiple of 64"),
])
def test_bad_arguments_are_named_before_any_work(args, text, capsys):
    from binary_semantic_cache import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert re.search(text, err), err
    assert "numpy" not in err and "Traceback" not in err


def test_bsc_bench_writes_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    done = subprocess.run(
        [sys.executable, "-m", "binary_semantic_cache.cli", "bench", "--sizes", "2000",
         "--runs", "1", "--no-end-to-end", "--json", str(tmp_path / "r.json"),
         "--plot", str(tmp_path / "r.png")],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert "2000" in data["scans"] and data["machine"]["numba_threads"] >= 1
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unwritable_outputs_fail_before_the_run(tmp_path):
    for flag in ("--json", "--plot"):
        done = subprocess.run(
            [sys.executable, "-m", "binary_semantic_cache.cli", "bench", "--sizes", "1000000",
             flag, str(tmp_path / "missing" / "out")], capture_output=True, text=True, timeout=600)
        assert done.returncode == 2 and f"{flag} " in done.stderr and "cannot write" in done.stderr
        assert not (tmp_path / "missing").exists()


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


def test_namespace_benchmark_reports_every_figure_per_run(capsys):
    from binary_semantic_cache.tools import bench_spaces

    result = bench_spaces.measure_namespaces(runs=2, spaces=12, per_space=40, dim=24)
    assert result["n"] == 480
    for table in ("ratios", "puts_per_second", "bytes_per_entry", "load_seconds"):
        assert result[table] and all(len(v) == 2 for v in result[table].values())
    assert all(len(row["median_us"]) == 2 for row in result["latency"].values())
    assert set(result["ratios"]) == {
        "get in one namespace, grouped", "get in one namespace, interleaved",
        "get in a different namespace each call, interleaved", "put with a key / put without"}
    # Each figure is a ratio of two timings of this run, not a constant.
    assert all(0 < v < 100 for values in result["ratios"].values() for v in values)
    assert all(72 < v < 400 for v in sum(result["bytes_per_entry"].values(), []))
    bench_spaces.report(result)
    out = capsys.readouterr().out
    assert "12 namespaces of 40 entries (480 in all)" in out and "get_exact" in out


def test_llm_benchmark_times_only_hits_and_reports_the_overhead(capsys):
    pytest.importorskip("openai")
    from binary_semantic_cache.tools import bench_llm

    result = bench_llm.measure_llm(runs=2, n=3_000, dim=32)
    assert set(result["latency"]) == {"exact hit via CachedOpenAI",
                                      "semantic hit via CachedOpenAI", "cache.get_exact alone",
                                      "cache.get alone", "embedder alone"}
    assert all(len(row["median_us"]) == 2 for row in result["latency"].values())
    # A hit through the wrapper does at least the cache call it wraps.
    lat = {k: np.median(v["median_us"]) for k, v in result["latency"].items()}
    assert lat["exact hit via CachedOpenAI"] > lat["cache.get_exact alone"]
    assert all(len(v) == 2 and v[0] > 0 for v in result["overhead_us"].values())
    bench_llm.report(result)
    out = capsys.readouterr().out
    assert "wrapper overhead, exact hit" in out and "budget" in out
