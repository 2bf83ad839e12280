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
    assert result["hit_rate"] == pytest.approx(result["correct_rate"] + result["wrong_rate"])
    # Same intent should dominate what is served at the default threshold.
    assert result["correct_rate"] > 4 * result["wrong_rate"] > 0
    assert result["stats"].memory_bytes / result["stats"].max_size <= 64


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
