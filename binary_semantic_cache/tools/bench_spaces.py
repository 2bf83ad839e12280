"""``bsc bench --namespaces``: what namespaces and exact keys cost, as ratios from one run.

One cache holds ``spaces`` namespaces of ``per_space`` entries, each with an
exact key, filled two ways: namespace after namespace (each namespace's
slots adjacent) and interleaved (rows of every namespace in turn, so each
namespace's slots are spread over the whole cache). Beside it, a cache that
holds only the entries of namespace 0. Within a run every method answers the
same queries one call at a time, in a fresh random order per query.
"""

import os
import shutil
import tempfile
import time

import numpy as np

from ..cache import BinarySemanticCache
from ..encoder import BinaryEncoder
from .bench import _add, _figures, _time_in_random_order, spread
from .progress import Silent, progress

QUERIES = 200
PUTS = 2_000
INTERLEAVE_ROWS = 10  # rows of one namespace per turn when filling interleaved


def _name(x):
    return f"tenant-{x}"


def _fill(cache, vectors, grouped):
    spaces, per_space, _ = vectors.shape
    keys = [[f"{x}/{i}" for i in range(per_space)] for x in range(spaces)]
    t0 = time.perf_counter()
    if grouped:
        for x in range(spaces):
            cache.put_batch(vectors[x], [None] * per_space, namespace=_name(x), keys=keys[x])
    else:
        for lo in range(0, per_space, INTERLEAVE_ROWS):
            rows = slice(lo, lo + INTERLEAVE_ROWS)
            for x in range(spaces):
                cache.put_batch(vectors[x, rows], [None] * len(keys[x][rows]),
                                namespace=_name(x), keys=keys[x][rows])
    return spaces * per_space / (time.perf_counter() - t0)


def measure_namespaces(*, runs=3, spaces=1000, per_space=1000, dim=384, seed=0):
    """Namespace gets against a cache of one namespace's entries, exact gets, keyed puts,
    memory per entry and load time; a JSON-ready dict."""
    rng = np.random.default_rng(seed)
    n = spaces * per_space
    vectors = rng.standard_normal((spaces, per_space, dim), dtype=np.float32)
    noise = 0.05 * rng.standard_normal((QUERIES, dim), dtype=np.float32)
    picks = rng.integers(0, per_space, QUERIES)
    home = vectors[0, picks] + noise  # near-duplicates of namespace 0's entries
    spread_over = rng.integers(0, spaces, QUERIES)
    roaming = vectors[spread_over, picks] + noise  # ... of a different namespace each time
    fresh = rng.standard_normal((PUTS, dim), dtype=np.float32)
    # Names and keys made before the clock runs, as the embeddings are.
    roam_names = [_name(int(x)) for x in spread_over]
    home_name, put_name = _name(0), _name(1)
    exact_keys = [f"{x}/{i}" for x, i in zip(spread_over.tolist(), picks.tolist())]
    encoder = BinaryEncoder(dim)
    out = {"spaces": spaces, "per_space": per_space, "n": n, "dim": dim, "latency": {},
           "ratios": {}, "puts_per_second": {}, "bytes_per_entry": {}, "load_seconds": {}}
    warm = BinarySemanticCache(encoder, max_entries=per_space)
    _fill(warm, vectors[:2, :4], True)  # load every kernel before the clock runs
    _fill(warm, vectors[:2, :4], False)
    folder = tempfile.mkdtemp(prefix="bsc-bench-spaces-")
    try:
        with progress("namespaces", runs) as bar:
            for run in range(runs):
                caches = {}
                for order in ("grouped", "interleaved"):
                    cache = BinarySemanticCache(encoder, max_entries=n)
                    rate = _fill(cache, vectors, order == "grouped")
                    out["puts_per_second"].setdefault(f"put_batch with keys, {order}",
                                                      []).append(rate)
                    out["bytes_per_entry"].setdefault(order, []).append(
                        cache.stats().memory_bytes / len(cache))
                    caches[order] = cache
                alone = BinarySemanticCache(encoder, max_entries=per_space)
                alone.put_batch(vectors[0], [None] * per_space)
                grouped, mixed = caches["grouped"], caches["interleaved"]
                methods = {
                    "get, a cache of one namespace's entries": lambda i: alone.get(home[i]),
                    "get in one namespace, grouped": lambda i: grouped.get(
                        home[i], namespace=home_name),
                    "get in one namespace, interleaved": lambda i: mixed.get(
                        home[i], namespace=home_name),
                    "get in a different namespace each call, interleaved": lambda i: mixed.get(
                        roaming[i], namespace=roam_names[i]),
                    "get_exact": lambda i: mixed.get_exact(exact_keys[i],
                                                           namespace=roam_names[i]),
                }
                found = [methods["get in one namespace, interleaved"](i) for i in range(8)]
                if any(e is None or e.namespace != _name(0) for e in found):
                    raise RuntimeError("a namespace get missed its own near-duplicate")
                times = _time_in_random_order(methods, range(QUERIES), 3, rng, Silent())
                for name, t in times.items():
                    _add(out["latency"], name, _figures(t))
                base = float(np.median(times["get, a cache of one namespace's entries"]))
                for name in list(methods)[1:4]:
                    out["ratios"].setdefault(name, []).append(
                        float(np.median(times[name])) / base)
                path = os.path.join(folder, f"run-{run}")
                mixed.save(path)  # before the puts below evict the oldest entries
                for mmap in (True, False):
                    t0 = time.perf_counter()
                    loaded = BinarySemanticCache.load(path, mmap=mmap, verify=False)
                    hit = loaded.get_exact(f"0/{picks[0]}", namespace=_name(0))
                    seconds = time.perf_counter() - t0
                    if hit is None:
                        raise RuntimeError("an exact key was lost in a save and load")
                    loaded.close()
                    label = "load mapped, first get_exact" if mmap else (
                        "load into memory, first get_exact")
                    out["load_seconds"].setdefault(label, []).append(seconds)
                shutil.rmtree(path, ignore_errors=True)
                fresh_keys = [f"fresh {run} {i}" for i in range(PUTS)]
                puts = {"put without a key": lambda i: mixed.put(fresh[i], None,
                                                                 namespace=put_name),
                        "put with a key": lambda i: mixed.put(fresh[i], None, namespace=put_name,
                                                              key=fresh_keys[i])}
                times = _time_in_random_order(puts, range(PUTS // 2), 1, rng, Silent())
                for name, t in times.items():
                    _add(out["latency"], name, _figures(t))
                out["ratios"].setdefault("put with a key / put without", []).append(
                    float(np.median(times["put with a key"]))
                    / float(np.median(times["put without a key"])))
                for cache in (grouped, mixed, alone):
                    cache.close()
                bar.update()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def report(s, out=print):
    """The figures of :func:`measure_namespaces`, one line each."""
    out(f"\n{s['spaces']:,} namespaces of {s['per_space']:,} entries ({s['n']:,} in all), "
        f"{s['dim']}-d, 256-bit codes, every entry with a key")
    for name, row in s["latency"].items():
        out(f"  {name:<54} {spread(row['median_us']):>22} us")
    for name, values in s["ratios"].items():
        label = name if name.startswith("put") else f"{name} / a cache of one namespace's"
        out(f"  {label:<80} {spread(values, '.2f')}x")
    for name, rates in s["puts_per_second"].items():
        out(f"  {name:<54} {spread(rates, ',.0f'):>22} puts/s")
    for name, values in s["bytes_per_entry"].items():
        out(f"  index bytes per entry, {name:<31} {spread(values, '.1f'):>22}")
    for name, values in s["load_seconds"].items():
        out(f"  {name:<54} {spread(values, '.3f'):>22} s")
