"""Single gets and puts beside the original binary-semantic-cache 1.0.1, in one run.

    python scripts/compare_original.py --json docs/results/versus-original.json

With ``--against DIR`` the other side is instead an earlier checkout of this
library (``git worktree add DIR <commit>``), to show what a change cost:

    python scripts/compare_original.py --against /tmp/before \
        --json docs/results/versus-before-namespaces.json

Both libraries import as ``binary_semantic_cache``, so each runs in a worker
process of its own, on the same data (same seed). The driver asks the two
workers in turn, in a fresh random order every round, for a batch of timed
single ``get`` calls and then single ``put`` calls on a full cache (each put
evicts), so a noisy neighbour slows both alike. Figures are ratios per round:
the median over rounds, with their range.

The original is installed on first use into ``--original-dir`` (network to
PyPI needed once). Its published wheel imports a sibling project it does not
ship (``src.quantization``, found five directories above the module); a stub
of those names is written there. The stub is never called: the original's
cache encodes through its Rust encoder, which is what is timed.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

WORKER = textwrap.dedent('''
    import json, sys, time
    import numpy as np
    which, entries, dim, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    from binary_semantic_cache import BinarySemanticCache
    if which == "original":
        from binary_semantic_cache import RustBinaryEncoder
        encoder = RustBinaryEncoder(dim, 256, seed=42)
    else:
        from binary_semantic_cache import BinaryEncoder
        encoder = BinaryEncoder(dim, 256, 42)
    rng = np.random.default_rng(seed)
    stored = rng.standard_normal((entries, dim)).astype(np.float32)
    queries = stored[rng.integers(0, entries, 1000)] + 0.05 * rng.standard_normal(
        (1000, dim)).astype(np.float32)
    fresh = rng.standard_normal((20_000, dim)).astype(np.float32)
    cache = BinarySemanticCache(encoder=encoder, max_entries=entries)
    for i, v in enumerate(stored):
        cache.put(v, f"answer {i}")
    for v in queries[:50]:
        cache.get(v)
    print("ready", flush=True)
    at = {"get": 0, "put": 0}
    for line in sys.stdin:
        op, n = line.split()
        n, seconds = int(n), []
        source = queries if op == "get" else fresh
        for _ in range(n):
            v = source[at[op] % len(source)]
            at[op] += 1
            t0 = time.perf_counter()
            cache.get(v) if op == "get" else cache.put(v, "new")
            seconds.append(time.perf_counter() - t0)
        print(json.dumps(seconds), flush=True)
''')

STUB = ('def _absent(*args, **kwargs):\n'
        '    raise RuntimeError("stub for a project the published wheel imports but does not '
        'ship")\n\n\n')


def install_original(root):
    """The original's site directory under ``root``, installed and stubbed if needed."""
    site = root / "a" / "b" / "c" / "d" / "e" / "site"  # its import reaches 5 levels up
    if not (site / "binary_semantic_cache").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--target", str(site), "binary-semantic-cache==1.0.1"], check=True)
    quantization = root / "a" / "b" / "c" / "binary_llm" / "src" / "quantization"
    quantization.mkdir(parents=True, exist_ok=True)
    for init in (quantization.parent / "__init__.py", quantization / "__init__.py"):
        init.touch()
    (quantization / "binarization.py").write_text(STUB + "RandomProjection = binarize_sign = "
                                                         "_absent\n")
    (quantization / "packing.py").write_text(STUB + "pack_codes = _absent\n")
    return site


class Worker:
    def __init__(self, which, site, entries, dim, seed):
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if which != "ours":
            env["PYTHONPATH"] = str(site)
        cwd = Path(__file__).resolve().parent  # not the checkout root: no stray import path
        self.which = which
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, which, str(entries), str(dim), str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.close()
            raise RuntimeError(f"the {which} worker failed to start (exit {self.proc.poll()})")

    def time(self, op, n):
        self.proc.stdin.write(f"{op} {n}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=60)


def compare(site, *, entries, dim, rounds, calls, seed, other="original"):
    workers = {}
    try:
        for which in ("ours", other):
            workers[which] = Worker(which, site, entries, dim, seed)
        per_round = {"get_us": {w: [] for w in workers},
                     "puts_per_second": {w: [] for w in workers}}
        rng = random.Random(seed)
        for _ in range(rounds):
            for op in ("get", "put"):
                for which in rng.sample(list(workers), len(workers)):
                    seconds = workers[which].time(op, calls)
                    if op == "get":
                        per_round["get_us"][which].append(float(np.median(seconds)) * 1e6)
                    else:
                        per_round["puts_per_second"][which].append(calls / sum(seconds))
    finally:
        for worker in workers.values():
            worker.close()
    ours, orig = per_round["get_us"]["ours"], per_round["get_us"][other]
    put_ours, put_orig = per_round["puts_per_second"]["ours"], per_round["puts_per_second"][other]
    return {"entries": entries, "dim": dim, "rounds": rounds, "calls_per_round": calls,
            "against": other,
            "per_round": per_round,
            "get_time_ratio": [a / b for a, b in zip(ours, orig)],
            "put_rate_ratio": [a / b for a, b in zip(put_ours, put_orig)]}


def spread(values, spec):
    mid = format(float(np.median(values)), spec)
    return f"{mid} ({format(min(values), spec)}-{format(max(values), spec)})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=500, help="timed calls per round and op")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--original-dir", type=Path,
                        default=Path.home() / ".cache" / "bsc-original-1.0.1")
    parser.add_argument("--against", type=Path, metavar="DIR",
                        help="an earlier checkout of this library, compared instead of the "
                             "original")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if min(args.entries, args.dim, args.rounds, args.calls) < 1:
        parser.error("expected --entries, --dim, --rounds and --calls of at least 1")
    if args.against is not None and not (args.against / "binary_semantic_cache").is_dir():
        parser.error(f"expected --against as a checkout holding binary_semantic_cache/, got "
                     f"{args.against}")
    other = "original" if args.against is None else "earlier"
    site = install_original(args.original_dir) if args.against is None else args.against
    result = compare(site, entries=args.entries, dim=args.dim, rounds=args.rounds,
                     calls=args.calls, seed=args.seed, other=other)
    r = result["per_round"]
    print(f"{args.entries:,} entries, {args.dim}-d, 256-bit codes; {args.rounds} rounds of "
          f"{args.calls} calls each, the two libraries in turn (median, range over rounds)")
    print(f"  get, us:       ours {spread(r['get_us']['ours'], '.1f')}, {other} "
          f"{spread(r['get_us'][other], '.1f')}; ours/{other} "
          f"{spread(result['get_time_ratio'], '.3f')}")
    print(f"  single puts/s: ours {spread(r['puts_per_second']['ours'], ',.0f')}, {other} "
          f"{spread(r['puts_per_second'][other], ',.0f')}; ours/{other} "
          f"{spread(result['put_rate_ratio'], '.2f')}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
