"""The ``bsc`` command."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bsc", description="binary_semantic_cache tools")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="replay real customer questions through a cache (offline)")
    demo.add_argument("--threshold", type=float, default=0.80,
                      help="least estimated cosine for a hit (default 0.80)")
    demo.add_argument("--bits", type=int, default=256, help="bits per code (default 256)")
    demo.add_argument("--seed", type=int, default=42, help="encoder seed (default 42)")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from . import demo as demo_module

        try:
            demo_module.run(threshold=args.threshold, code_bits=args.bits, seed=args.seed)
        except (ValueError, TypeError) as exc:
            parser.exit(2, f"bsc demo: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
