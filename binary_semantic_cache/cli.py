"""The ``bsc`` command."""

import argparse
import json
import sys

from .errors import CacheError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bsc", description="binary_semantic_cache tools")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="replay real customer questions through a cache (offline)")
    demo.add_argument("--threshold", type=float, default=0.80,
                      help="least estimated cosine for a hit (default 0.80)")
    demo.add_argument("--bits", type=int, default=256, help="bits per code (default 256)")
    demo.add_argument("--seed", type=int, default=42, help="encoder seed (default 42)")

    bench = sub.add_parser("bench", help="time our scans beside NumPy, faiss and the read roof")
    bench.add_argument("--sizes", default="10000,100000,1000000",
                       help="comma-separated numbers of codes (default 10000,100000,1000000)")
    bench.add_argument("--quick", action="store_true", help="10k and 100k codes only")
    bench.add_argument("--no-end-to-end", action="store_true",
                       help="skip cache.get and put throughput at 100k entries")
    bench.add_argument("--json", metavar="PATH", help="write the results as JSON")
    bench.add_argument("--plot", metavar="PATH", help="write a PNG of latency against size")

    evaluate = sub.add_parser("eval", help="answer quality of codes, rescoring and thresholds")
    evaluate.add_argument("--data", metavar="PATH",
                          help="your labelled .npz (clusters or pairs; see docs/quality.md)")
    evaluate.add_argument("--latency-entries", type=int, default=0, metavar="N",
                          help="also time get at N entries for each configuration")
    evaluate.add_argument("--json", metavar="PATH", help="write the results as JSON")
    evaluate.add_argument("--plot", metavar="PATH", help="write precision against hit rate (PNG)")

    inspect = sub.add_parser("inspect", help="describe a saved cache and verify its checksums")
    inspect.add_argument("path")
    inspect.add_argument("--no-verify", action="store_true", help="skip the SHA-256 checks")
    inspect.add_argument("--json", action="store_true", help="print JSON")

    migrate = sub.add_parser("migrate", help="import a binary-semantic-cache 1.0.1 save")
    migrate.add_argument("source", help="the 1.0.1 directory (header.json, entries.bin, ...)")
    migrate.add_argument("target", help="directory for the new save")
    migrate.add_argument("--dim", type=int, required=True, help="embedding dimension of the codes")
    migrate.add_argument("--seed", type=int, default=42, help="encoder seed (default 42)")
    migrate.add_argument("--trust-pickle", action="store_true",
                         help="read responses.pkl although pickles can run code")
    args = parser.parse_args(argv)

    try:
        if args.command == "demo":
            from .tools import demo as demo_module

            demo_module.run(threshold=args.threshold, code_bits=args.bits, seed=args.seed)
        elif args.command == "bench":
            _bench(args)
        elif args.command == "eval":
            from .tools import eval_report

            eval_report.run(args)
        elif args.command == "inspect":
            _inspect(args)
        else:
            _migrate(args)
    except (ValueError, TypeError, CacheError, OSError, ImportError) as exc:
        parser.exit(2, f"bsc {args.command}: {exc}\n")
    return 0


def _bench(args):
    from .tools import bench

    sizes = (10_000, 100_000) if args.quick else tuple(int(s) for s in args.sizes.split(","))
    results = {"scans": bench.scans(sizes)}
    if not args.no_end_to_end:
        results["end_to_end"] = bench.end_to_end()
    bench.report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.plot:
        bench.plot(results, args.plot)


def _inspect(args):
    from .persistence import inspect

    info = inspect(args.path, verify=not args.no_verify)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    enc = info["encoder"]
    print(f"{info['path']}")
    print(f"  format version   {info['format_version']}")
    print(f"  encoder          embedding_dim={enc['embedding_dim']} code_bits={enc['code_bits']} "
          f"seed={enc['seed']} projection sha256 {enc['projection_sha256'][:16]}...")
    print(f"  entries          {info['entries']:,} of capacity {info['capacity']:,}")
    print(f"  threshold, ttl   {info['threshold']}, {info['ttl']}")
    print(f"  bytes on disk    {info['bytes_on_disk']:,}")
    print(f"  pickled          {'yes' if info['pickle'] else 'no'}")
    print(f"  checksums        {info['checksums']}")


def _migrate(args):
    from .encoder import BinaryEncoder
    from .migrate import import_v3

    cache = import_v3(args.source, encoder=BinaryEncoder(args.dim, 256, args.seed),
                      trust_pickle=args.trust_pickle)
    cache.save(args.target)
    print(f"imported {len(cache):,} entries from {args.source} into {args.target}")


if __name__ == "__main__":
    sys.exit(main())
