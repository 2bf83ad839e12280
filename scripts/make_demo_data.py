"""Build the package's data files from ../shared/data.

- ``banking77_demo.npz``: a stratified subset of Banking77 (CC BY 4.0, PolyAI)
  with its precomputed all-MiniLM-L6-v2 embeddings: per intent, up to 52
  training queries (the cached questions) and 13 test queries (the unseen ones).
- ``fow_cache_pairs.npz``: the fow_cache question pairs (CC BY 4.0, Mabon ap
  Gwyn), 300 that should hit and 300 traps, with their embeddings, minus the 8
  pairs its authors mark ambiguous.

Run from the repository root:

    python scripts/make_demo_data.py ../shared/data
"""

import json
import sys
from pathlib import Path

import numpy as np

PER_INTENT = {"train": 52, "test": 13}


def main(src):
    banking77(Path(src) / "banking77")
    fow_cache(Path(src) / "fow_cache")


def fow_cache(src):
    rows = [json.loads(line) for line in (src / "pairs.jsonl").read_text().splitlines() if line]
    data = np.load(src / "minilm_l6_v2.npz")
    assert [r["id"] for r in rows] == data["ids"].tolist()
    keep = np.array([not r.get("ambiguous") for r in rows])
    out = Path(__file__).resolve().parents[1] / "binary_semantic_cache" / "data" / "fow_cache_pairs.npz"
    np.savez_compressed(
        out, a=data["a"][keep], b=data["b"][keep],
        category=np.array([r["category"] for r in rows])[keep],
        same_answer=np.array([r["same_answer"] for r in rows])[keep],
        embeddings_a=data["embeddings_a"][keep], embeddings_b=data["embeddings_b"][keep])
    print(f"wrote {out} ({out.stat().st_size:,} bytes, {keep.sum()} pairs)")


def banking77(src):
    data = np.load(Path(src) / "minilm_l6_v2.npz")
    rng = np.random.default_rng(77)
    keep = []
    for split, per in PER_INTENT.items():
        for label in np.unique(data["labels"]):
            rows = np.flatnonzero((data["split"] == split) & (data["labels"] == label))
            keep.extend(np.sort(rng.choice(rows, size=min(per, rows.size), replace=False)))
    keep = np.asarray(keep)
    texts = data["texts"][keep]
    out = Path(__file__).resolve().parents[1] / "binary_semantic_cache" / "data" / "banking77_demo.npz"
    np.savez_compressed(
        out,
        texts=texts.astype(f"U{max(map(len, texts))}"),
        labels=data["labels"][keep],
        split=data["split"][keep],
        embeddings=data["embeddings"][keep],
    )
    print(f"wrote {out} ({out.stat().st_size:,} bytes, {keep.size:,} queries)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
