import subprocess
import sys

import pytest

from binary_semantic_cache import cli, datasets
from binary_semantic_cache.tools import demo


def test_bundled_data_is_real_labelled_text():
    train, test = datasets.banking77()
    assert len(train) > 3000 and len(test) > 900
    assert set(test.labels) <= set(train.labels) and len(set(train.labels)) == 77
    assert train.embeddings.shape == (len(train), 384)
    norms = (train.embeddings ** 2).sum(1)
    assert abs(norms.mean() - 1) < 1e-2


def test_demo_reports_quality_and_latency(capsys):
    lines = []
    result = demo.run(out=lines.append)
    text = "\n".join(lines)
    for label in ("hit rate", "correct hits", "wrong hits", "get latency p50/p99",
                  "put latency p50/p99", "index memory / entry"):
        assert label in text
    # The demo's own count of hits against the cache's counters: one get per question.
    _, test = datasets.banking77()
    assert result["stats"].hits + result["stats"].misses == len(test)
    assert result["hit_rate"] == result["stats"].hits / len(test)
    # Same intent should dominate what is served at the default threshold.
    assert result["correct_rate"] > 4 * result["wrong_rate"] > 0
    assert result["stats"].memory_bytes / result["stats"].max_size <= 80


def test_bsc_demo_command_runs():
    done = subprocess.run([sys.executable, "-m", "binary_semantic_cache.cli", "demo",
                           "--threshold", "0.9"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "threshold 0.9" in done.stdout and "hit rate" in done.stdout


def test_bsc_rejects_bad_options(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--threshold", "3"])
    assert exc.value.code == 2
    assert "--threshold: expected a number in [-1, 1]" in capsys.readouterr().err


def run_bsc(*args):
    return subprocess.run([sys.executable, "-m", "binary_semantic_cache.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_version_and_bare_help():
    from binary_semantic_cache import __version__

    done = run_bsc("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"bsc {__version__}"
    done = run_bsc()
    assert done.returncode == 0 and "usage: bsc" in done.stdout
    for command in ("demo", "bench", "eval", "inspect", "migrate"):
        assert command in done.stdout


def test_migrate_says_a_current_save_needs_none(tmp_path):
    import numpy as np

    from binary_semantic_cache import BinaryEncoder, BinarySemanticCache

    cache = BinarySemanticCache(BinaryEncoder(8), rescore="int8", ttl=30.0)
    cache.put(np.ones(8), "x")
    cache.save(tmp_path / "new")
    done = run_bsc("migrate", tmp_path / "new", tmp_path / "out", "--dim", 8)
    assert done.returncode == 2 and "already a save in this release's format" in done.stderr
    done = run_bsc("inspect", tmp_path / "new")
    assert "threshold, ttl   0.8, 30.0" in done.stdout
    assert "rescore          int8 (k=10)" in done.stdout


def test_eval_refuses_a_file_that_is_not_npz_without_mentioning_pickle(tmp_path):
    notes = tmp_path / "notes.py"
    notes.write_text("print('not data')\n")
    done = run_bsc("eval", "--data", notes)
    assert done.returncode == 2 and "not a .npz file of arrays" in done.stderr
    assert "pickle" not in done.stderr
    pairs = tmp_path / "pairs.npz"
    import numpy as np

    np.savez(pairs, embeddings_a=np.ones((2, 3)), embeddings_b=np.ones((2, 3)),
             same_answer=np.array([True, False]))
    done = run_bsc("eval", "--data", pairs, "--plot", tmp_path / "p.png")
    assert done.returncode == 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # refused before the run, with the command that fixes it
        assert "pip install 'binary-semantic-cache[plot]'" in done.stderr
    else:
        assert "holds pairs" in done.stderr
