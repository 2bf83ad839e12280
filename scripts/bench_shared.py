"""SharedSemanticCache on a real redis-server, beside a plain cache, in one run.

    python scripts/bench_shared.py --json docs/results/shared.json

- ``get`` on a synced instance against a plain BinarySemanticCache holding the
  same 100,000 entries (384-d), the same queries in a fresh random order per
  round: the ratio per round, median and range;
- ``put_batch`` into Redis (batches of 1,000, each one Lua call), entries/s;
- propagation: a put on one instance until another has applied it, p50/p99
  (both instances in this process, so they share its GIL);
- bootstrap: a new instance loading every entry, at 100k (and 1M with
  ``--million``);
- Redis memory per entry (``used_memory`` over entries; the change log's
  copies included).

redis-server runs without persistence in a temporary directory.
"""

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache  # noqa: E402
from binary_semantic_cache.shared import SharedSemanticCache  # noqa: E402
from tests.redis_support import RedisServer  # noqa: E402

DIM = 384


def fill(cache, vectors, out=None):
    t0 = time.perf_counter()
    for lo in range(0, len(vectors), 1_000):
        rows = vectors[lo:lo + 1_000]
        cache.put_batch(rows, [f"answer {lo + i}" for i in range(len(rows))])
    seconds = time.perf_counter() - t0
    if out is not None:
        out.append(len(vectors) / seconds)


def get_ratio(plain, shared, queries, rounds):
    ratios, times = [], {"plain": [], "shared": []}
    for _ in range(rounds):
        per = {"plain": [], "shared": []}
        for q in queries:
            for name in random.sample(["plain", "shared"], 2):
                cache = plain if name == "plain" else shared
                t0 = time.perf_counter()
                cache.get(q)
                per[name].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) * 1e6 for k, v in per.items()}
        for k in med:
            times[k].append(med[k])
        ratios.append(med["shared"] / med["plain"])
    return ratios, times


def propagation(a, b, n):
    seconds = []
    rng = np.random.default_rng(7)
    for i in range(n):
        vector = rng.standard_normal(DIM).astype(np.float32)
        t0 = time.perf_counter()  # from the put's start: b may apply it before put returns
        gid = a.put(vector, f"p{i}")
        with b._applied:
            while b._mirror.local_id(gid) is None:
                b._applied.wait(1.0)
        seconds.append(time.perf_counter() - t0)
        time.sleep(0.002)
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "puts": n}


def bootstrap(url, name, encoder, n):
    t0 = time.perf_counter()
    with SharedSemanticCache(url, name, encoder, max_entries=n) as fresh:
        seconds = time.perf_counter() - t0
        assert len(fresh) == n, (len(fresh), n)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--million", action="store_true", help="also bootstrap 1M entries")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    random.seed(0)
    rng = np.random.default_rng(0)
    n = args.entries
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    queries = vectors[rng.integers(0, n, 500)] + 0.05 * rng.standard_normal((500, DIM),
                                                                             dtype=np.float32)
    encoder = BinaryEncoder(DIM)
    out = {"entries": n, "dim": DIM}
    with tempfile.TemporaryDirectory() as folder:
        redis = RedisServer(folder, persistent=False)
        try:
            client = redis.client()
            base = client.info("memory")["used_memory"]
            rates = []
            shared = SharedSemanticCache(redis.url, "bench", encoder, max_entries=n)
            fill(shared, vectors, rates)
            out["put_batch_per_second"] = rates[0]
            out["redis_bytes_per_entry"] = (client.info("memory")["used_memory"] - base) / n
            plain = BinarySemanticCache(encoder, max_entries=n)
            fill(plain, vectors)
            shared.sync(30)
            ratios, times = get_ratio(plain, shared, queries, args.rounds)
            out["get_ratio"], out["get_us"] = ratios, times
            out["bootstrap_seconds"] = {str(n): bootstrap(redis.url, "bench", encoder, n)}
            other = SharedSemanticCache(redis.url, "bench", encoder, max_entries=n)
            out["propagation"] = propagation(shared, other, 1_000)
            other.close()
            shared.close()
            if args.million:
                big = SharedSemanticCache(redis.url, "million", encoder, max_entries=1_000_000)
                block = rng.standard_normal((100_000, DIM), dtype=np.float32)
                for _ in range(10):
                    fill(big, block + 0.01 * rng.standard_normal(block.shape, dtype=np.float32))
                big.close()
                out["bootstrap_seconds"]["1000000"] = bootstrap(redis.url, "million", encoder,
                                                                1_000_000)
        finally:
            redis.stop()
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
