"""Build binary_semantic_cache/data/banking77_demo.npz from ../shared/data/banking77.

A stratified subset of Banking77 (CC BY 4.0, PolyAI) with its precomputed
all-MiniLM-L6-v2 embeddings: per intent, up to 52 training queries (the cached
questions) and 13 test queries (the unseen ones). Run from the repository root:

    python scripts/make_demo_data.py ../shared/data/banking77
"""

import sys
from pathlib import Path

import numpy as np

PER_INTENT = {"train": 52, "test": 13}


def main(src):
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
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/banking77")
