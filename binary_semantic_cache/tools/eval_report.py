"""``bsc eval``: tables (and a plot) from binary_semantic_cache.quality."""

import json

from .. import _quality, datasets
from .._optional import pyplot
from ..quality import EvaluationResult
from .progress import progress


def run(args, out=print):
    results = {}
    if args.data:
        kind, data = datasets.load_labelled(args.data)
        label = args.data
    else:
        kind, data, label = "clusters", datasets.banking77(), "Banking77 subset (bundled)"
    if args.plot and kind != "clusters":
        raise ValueError(f"--plot draws the replay of a clusters file; {args.data} holds pairs, "
                         "which have no hit-rate curve to plot")
    if kind == "clusters":
        with progress("replaying", 1) as bar:
            results["clusters"] = _quality.evaluate_clusters(
                *data, latency_entries=args.latency_entries, rescore_k=args.rescore_k)
            bar.update()
        report_clusters(results["clusters"], label, out)
    if kind == "pairs" or not args.data:
        pairs = data if kind == "pairs" else datasets.fow_cache_pairs()
        results["pairs"] = _quality.evaluate_pairs(pairs)
        report_pairs(results["pairs"], args.data or "fow_cache pairs (bundled)", out)
    results["rescore_k"] = args.rescore_k
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    if args.plot:
        plot(results["clusters"], args.plot, label)
    return results


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def report_clusters(results, label, out=print):
    out(f"\n{label}: nearest cached question for each unseen one")
    out(f"{'configuration':<22}{'B/entry':>8}{'get us':>8}{'best F1':>8}"
        f"{'t@P90':>6}{'t@P95':>6}{'t@P99':>6}{'wrong@P90':>10}{'ratio':>6}"
        f"{'wrong@P95':>10}{'ratio':>6}")
    for name, r in results.items():
        t = r["thresholds_for_precision"]
        out(f"{name:<22}{r['bytes_per_entry']:>8}{_fmt(r.get('get_us'), '.1f'):>8}"
            f"{r['best_f1']:>8.3f}{_fmt(t[0.9], '.2f'):>6}{_fmt(t[0.95], '.2f'):>6}"
            f"{_fmt(t[0.99], '.2f'):>6}{_fmt(r.get('wrong_at_float_p90'), '.1%'):>10}"
            f"{_fmt(r.get('ratio_at_float_p90'), '.2f'):>6}"
            f"{_fmt(r.get('wrong_at_float_p95'), '.1%'):>10}"
            f"{_fmt(r.get('ratio_at_float_p95'), '.2f'):>6}")
    out("  t@P90: least threshold giving 90% precision. wrong@P90: wrong-hit rate when the")
    out("  configuration serves as many correct hits as float cosine at its P90 threshold")
    out("  ('-': it never does); ratio: that over float cosine's own wrong-hit rate.")
    out("  similarity of the returned entry minus its true cosine (nearest-of-many inflation): "
        + ", ".join(f"{n} {r['inflation']:+.3f}" for n, r in results.items()))
    for name in ("float cosine", "256 bits", "256 bits + int8"):
        if name not in results:
            continue
        out(f"\n  {name}: threshold  hit rate  correct  wrong  precision  F1")
        for row in results[name]["curve"]:
            if round(row["threshold"] * 100) % 5 == 0 and row["threshold"] >= 0.6:
                out(f"  {'':<{len(name)}}  {row['threshold']:>9.2f}  {row['hit_rate']:>8.1%}"
                    f"  {row['correct_rate']:>7.1%}  {row['wrong_rate']:>5.1%}"
                    f"  {row['precision']:>9.1%}  {row['f1']:.3f}")


def report_pairs(results, label, out=print):
    out(f"\n{label}: share of pairs that hit (each b against its own a)")
    first = next(iter(results.values()))
    cats = list(first)
    thresholds = list(next(iter(first.values())))
    out(f"{'configuration':<22}{'threshold':>10}" + "".join(f"{c[:12]:>13}" for c in cats))
    for name, per_cat in results.items():
        for t in thresholds:
            out(f"{name:<22}{t:>10.2f}" + "".join(f"{per_cat[c][t]:>13.1%}" for c in cats))


def plot(results, path, label):
    plt = pyplot(files_only=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    EvaluationResult(label, results).plot(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
