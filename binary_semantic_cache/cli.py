"""The ``bsc`` command. Every argument is checked before any work starts."""

import argparse
import json
import os
import sys

from .errors import CacheError


def main(argv=None):
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    try:
        _check_outputs(args)
        if args.command == "demo":
            from .tools import demo

            result = demo.run(threshold=args.threshold, code_bits=args.bits, seed=args.seed)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(demo.as_json(result), f, indent=2)
        elif args.command == "bench":
            _bench(args)
        elif args.command == "eval":
            from .tools import eval_report

            eval_report.run(args)
        elif args.command == "inspect":
            _inspect(args)
        elif args.command == "serve":
            _serve(args)
        else:
            _migrate(args)
    except (ValueError, TypeError, CacheError, OSError, ImportError) as exc:
        parser.exit(2, f"bsc {args.command}: {exc}\n")
    return 0


def _parser():
    from . import __version__

    parser = argparse.ArgumentParser(prog="bsc", description="binary_semantic_cache tools")
    parser.add_argument("--version", action="version", version=f"bsc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="replay real customer questions through a cache (offline)")
    demo.add_argument("--threshold", type=_threshold, default=0.80,
                      help="least estimated cosine for a hit, in [-1, 1] (default 0.80)")
    demo.add_argument("--bits", type=_bits, default=256,
                      help="bits per code: a multiple of 64 from 64 to 4096 (default 256)")
    demo.add_argument("--seed", type=_count(0), default=42, help="encoder seed (default 42)")
    demo.add_argument("--json", metavar="PATH", help="write the results as JSON")

    bench = sub.add_parser("bench", help="time our scans beside NumPy, faiss and the read roof")
    bench.add_argument("--sizes", type=_sizes, default=(10_000, 100_000, 1_000_000),
                       help="comma-separated numbers of codes (default 10000,100000,1000000)")
    bench.add_argument("--quick", action="store_true", help="10k and 100k codes only")
    bench.add_argument("--runs", type=_count(1), default=3,
                       help="independent runs, for the spread of every figure (default 3)")
    bench.add_argument("--no-end-to-end", action="store_true",
                       help="skip cache.get and put throughput at 100k entries")
    bench.add_argument("--persistence", action="store_true",
                       help="also time save and load of 1M entries")
    bench.add_argument("--namespaces", action="store_true",
                       help="also time 1,000 namespaces of 1,000 keyed entries each")
    bench.add_argument("--no-llm", action="store_true",
                       help="skip timing hits through CachedOpenAI (skipped anyway without "
                       "the openai package)")
    bench.add_argument("--json", metavar="PATH", help="write the results as JSON")
    bench.add_argument("--plot", metavar="PATH", help="write a PNG of latency against size")

    evaluate = sub.add_parser("eval", help="answer quality of codes, rescoring and thresholds")
    evaluate.add_argument("--data", metavar="PATH",
                          help="your labelled .npz (clusters or pairs; see docs/quality.md)")
    evaluate.add_argument("--latency-entries", type=_count(0), default=0, metavar="N",
                          help="also time get at N entries for each configuration")
    evaluate.add_argument("--rescore-k", type=_count(1), default=10, metavar="K",
                          help="candidates rescored by the rescoring configurations (default 10)")
    evaluate.add_argument("--json", metavar="PATH", help="write the results as JSON")
    evaluate.add_argument("--plot", metavar="PATH", help="write precision against hit rate (PNG)")

    inspect = sub.add_parser("inspect", help="describe a saved cache and verify its checksums")
    inspect.add_argument("path")
    inspect.add_argument("--no-verify", action="store_true", help="skip the SHA-256 checks")
    inspect.add_argument("--json", action="store_true", help="print JSON")

    migrate = sub.add_parser("migrate", help="import a binary-semantic-cache 1.0.1 save")
    migrate.add_argument("source", help="the 1.0.1 directory (header.json, entries.bin, ...)")
    migrate.add_argument("target", help="directory for the new save")
    migrate.add_argument("--dim", type=_count(1), required=True,
                         help="embedding dimension of the codes")
    migrate.add_argument("--seed", type=_count(0), default=42, help="encoder seed (default 42)")
    migrate.add_argument("--trust-pickle", action="store_true",
                         help="read responses.pkl although pickles can run code")
    serve = sub.add_parser("serve", help="an OpenAI-compatible caching proxy (the [server] extra)")
    serve.add_argument("--upstream", required=True, metavar="URL",
                       help="the API to cache, with its /v1 (e.g. https://api.openai.com/v1)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=_count(0), default=8000, help="port (8000)")
    serve.add_argument("--embedder", default="none", metavar="SPEC",
                       help="none (exact matches only; the default), upstream:MODEL (the "
                       "upstream's /v1/embeddings with the caller's key), ollama:MODEL or "
                       "openai:MODEL")
    serve.add_argument("--cache-dir", metavar="DIR",
                       help="load the cache from here at start and save it here")
    serve.add_argument("--max-entries", type=_count(1), default=10_000,
                       help="capacity of a new cache (10000)")
    serve.add_argument("--threshold", type=_unit, default=0.90,
                       help="least similarity of a semantic hit, 0 to 1 (0.90)")
    serve.add_argument("--ttl", type=_seconds, default=None, help="seconds an answer lives")
    serve.add_argument("--save-interval", type=_seconds, default=60.0,
                       help="seconds between saves of --cache-dir (60)")
    serve.add_argument("--upstream-timeout", type=_seconds, default=600.0,
                       help="seconds an upstream call may take (600)")
    serve.add_argument("--max-body", type=_count(1), default=10_000_000, metavar="BYTES",
                       help="largest request body accepted (10000000)")
    serve.add_argument("--shared-tenants", action="store_true",
                       help="one cache for every API key (default: one per key)")
    serve.add_argument("--admin-token-file", metavar="FILE",
                       help="a file holding the token POST /bsc/flush needs")
    serve.add_argument("--redis", metavar="URL",
                       help="share one cache with every replica on this Redis (the [redis] "
                       "extra); replaces --cache-dir")
    serve.add_argument("--name", default="bsc", help="the shared cache's name in Redis (bsc)")
    return parser


# ---------------------------------------------------------------- argument types


def _unit(text):
    value = _threshold(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value}")
    return value


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _threshold(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [-1, 1], got {text!r}") from None
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [-1, 1] (an estimated cosine), "
                                         f"got {value}; try 0.8")
    return value


def _count(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {value}")
        return value

    parse.__name__ = "count"
    return parse


def _bits(text):
    value = _count(64)(text)
    if value % 64 or value > 4096:
        raise argparse.ArgumentTypeError(f"expected a multiple of 64 from 64 to 4096, got {value}")
    return value


def _sizes(text):
    parts = [part.strip().replace("_", "") for part in text.split(",")]
    try:
        sizes = tuple(int(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as "
                                         f"10000,100000, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected sizes of at least 1 code, got {text!r}")
    return sizes


def _check_outputs(args):
    """Fail before the work, not after it: output paths and the plotting library."""
    for flag in ("json", "plot"):
        path = getattr(args, flag, None)
        if not isinstance(path, str):
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise ValueError(f"--{flag} {path}: cannot write there (expected a file path in an "
                             "existing, writable directory)")
    if getattr(args, "plot", None):
        from ._optional import pyplot

        pyplot(files_only=True)


# ---------------------------------------------------------------- commands


def _bench(args):
    from .tools import bench

    sizes = (10_000, 100_000) if args.quick else args.sizes
    results = bench.run(sizes, runs=args.runs, end_to_end=not args.no_end_to_end,
                        persistence=args.persistence, namespaces=args.namespaces,
                        llm=False if args.no_llm else None)
    bench.report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.plot:
        bench.plot(results, args.plot)
    bench.check(results)


def _serve(args):
    from .server.options import ServeOptions

    options = ServeOptions(
        upstream=args.upstream, host=args.host, port=args.port, embedder=args.embedder,
        cache_dir=args.cache_dir, max_entries=args.max_entries, threshold=args.threshold,
        ttl=args.ttl, save_interval=args.save_interval, upstream_timeout=args.upstream_timeout,
        max_body=args.max_body, shared_tenants=args.shared_tenants,
        admin_token_file=args.admin_token_file, redis=args.redis, name=args.name)
    from .server.app import serve

    serve(options)


def _inspect(args):
    from .persistence import inspect

    info = inspect(args.path, verify=not args.no_verify)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    enc = info["encoder"]
    rescore = info["rescore"] or "none"
    if info["rescore"]:
        rescore += f" (k={info['rescore_k']})"
    print(f"{info['path']}")
    print(f"  format version   {info['format_version']}")
    print(f"  encoder          embedding_dim={enc['embedding_dim']} code_bits={enc['code_bits']} "
          f"seed={enc['seed']} projection sha256 {enc['projection_sha256'][:16]}...")
    print(f"  entries          {info['entries']:,} of capacity {info['capacity']:,}")
    print(f"  threshold, ttl   {info['threshold']}, {info['ttl']}")
    print(f"  rescore          {rescore}")
    print(f"  namespaces       {info['namespace_ids']:,} ids; exact keys "
          f"{'yes' if info['exact_keys'] else 'no'}")
    print(f"  bytes on disk    {info['bytes_on_disk']:,}")
    print(f"  pickled          {'yes' if info['pickle'] else 'no'}")
    print(f"  checksums        {info['checksums']}")


def _migrate(args):
    from pathlib import Path

    from .encoder import BinaryEncoder
    from .migrate import import_v3
    from .persistence.savedir import MANIFEST

    if (Path(args.source) / MANIFEST).exists():
        raise ValueError(f"{args.source} is already a save in this release's format (it has a "
                         f"{MANIFEST}); load it with BinarySemanticCache.load, no migration needed")
    cache = import_v3(args.source, encoder=BinaryEncoder(args.dim, 256, args.seed),
                      trust_pickle=args.trust_pickle)
    cache.save(args.target)
    print(f"imported {len(cache):,} entries from {args.source} into {args.target}")


if __name__ == "__main__":
    sys.exit(main())
