"""``bsc bench``: our scans beside NumPy, faiss and the machine's read speed.

Every method answers the same queries over the same codes, one call at a time
with the methods taken in turn, so a noisy neighbour slows all of them alike;
figures are medians and 99th percentiles of those single calls. Before timing,
each method's best distances are checked against the serial kernel's.
"""

import time

import numba
import numpy as np
from numba import prange

from .. import _kernels as K
from .._core.jit import JIT, JIT_PARALLEL
from .._optional import pyplot
from ..cache import BinarySemanticCache
from ..encoder import BinaryEncoder
from .progress import progress

N_WORDS = 4  # 256-bit codes
_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def bit_count(x):
    """Set bits of each uint64 element: ``np.bitwise_count`` (NumPy 2), else a byte table."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _BYTE_BITS[np.ascontiguousarray(x).view(np.uint8)].reshape(x.shape + (8,)).sum(
        axis=-1, dtype=np.uint8)


# The read roof: kernels that only read the codes, as fast as no scan can beat.


@numba.njit(**JIT)
def _stream_xor(codes, n):
    """XOR of the first ``n`` columns: the cost of just reading the codes once."""
    acc = np.uint64(0)
    for w in range(codes.shape[0]):
        row = codes[w, :n]
        for j in range(n):
            acc ^= row[j]
    return acc


@numba.njit(**JIT_PARALLEL)
def _stream_xor_parallel(codes, n, n_chunks):
    """``_stream_xor`` split over ``n_chunks`` threads."""
    per = (n + n_chunks - 1) // n_chunks
    parts = np.zeros(n_chunks, np.uint64)
    for c in prange(n_chunks):
        lo = min(n, c * per)
        hi = min(n, lo + per)
        acc = np.uint64(0)
        for w in range(codes.shape[0]):
            row = codes[w, lo:hi]
            for j in range(hi - lo):
                acc ^= row[j]
        parts[c] = acc
    acc = np.uint64(0)
    for c in range(n_chunks):
        acc ^= parts[c]
    return acc


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    # One thread: faiss's OpenMP and Numba's in one process stall each other.
    faiss.omp_set_num_threads(1)
    return faiss


class _Data:
    def __init__(self, n, n_queries, rng):
        self.n = n
        self.codes = rng.integers(0, 2**64, size=(N_WORDS, n), dtype=np.uint64, endpoint=False)
        self.rows = np.ascontiguousarray(self.codes.T)
        self.gen = np.ones(n, np.uint32)
        self.tick = np.arange(1, n + 1, dtype=np.uint32)
        queries = rng.integers(0, 2**64, size=(n_queries, N_WORDS), dtype=np.uint64,
                               endpoint=False)
        near = rng.integers(0, n, size=n_queries // 2)
        queries[: len(near)] = self.rows[near] ^ np.uint64(0b1011)  # near duplicates
        self.queries = queries


def _single_methods(data, faiss, threads):
    codes, n, gen, tick = data.codes, data.n, data.gen, data.tick
    methods = {"numba serial": lambda q: K._scan_top1(codes, n, q, gen, tick)[1]}
    if threads > 1:
        methods["numba parallel"] = lambda q: K._scan_top1_parallel(codes, n, q, gen, tick,
                                                                    threads)[1]
    rows = data.rows
    methods["numpy"] = lambda q: int(bit_count(rows ^ q).sum(axis=1, dtype=np.int64).min())
    if faiss is not None:
        index = faiss.IndexBinaryFlat(64 * N_WORDS)
        index.add(rows.view(np.uint8))
        methods["faiss flat"] = lambda q: int(index.search(q.view(np.uint8)[None, :], 1)[0][0, 0])
    methods["read roof"] = lambda q: _stream_xor(codes, n)
    if threads > 1:
        methods["read roof parallel"] = lambda q: _stream_xor_parallel(codes, n, threads)
    return methods


def _batch_methods(data, faiss, threads):
    codes, n, gen, tick, queries = data.codes, data.n, data.gen, data.tick, data.queries
    slots = np.empty(len(queries), np.int64)
    dists = np.empty(len(queries), np.int64)

    def serial(_):
        K._scan_batch(codes, n, queries, gen, tick, slots, dists)
        return dists.copy()

    def parallel(_):
        K._scan_batch_parallel(codes, n, queries, gen, tick, slots, dists, threads)
        return dists.copy()

    methods = {"numba batch": serial}
    if threads > 1:
        methods["numba batch parallel"] = parallel
    if faiss is not None:
        index = faiss.IndexBinaryFlat(64 * N_WORDS)
        index.add(data.rows.view(np.uint8))
        methods["faiss flat batch"] = lambda _: index.search(queries.view(np.uint8), 1)[0][:, 0]
    return methods


def _time_in_turn(methods, inputs, rounds, bar):
    """Per-call seconds of each method over ``inputs``, methods taken in turn."""
    times = {name: [] for name in methods}
    names = list(methods)
    for method in methods.values():  # load or compile each kernel off the clock
        method(inputs[0])
    for r in range(rounds):
        for i, x in enumerate(inputs):
            for k in range(len(names)):
                name = names[(i + k + r) % len(names)]
                t0 = time.perf_counter()
                methods[name](x)
                times[name].append(time.perf_counter() - t0)
            bar.update()
    return times


def _check(methods, inputs, reference, what):
    want = [reference(x) for x in inputs]
    for name, method in methods.items():
        if "roof" in name:
            continue
        got = [method(x) for x in inputs]
        if not all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got, want)):
            raise AssertionError(f"{name} disagrees with numba serial on {what}")


def _summary(times, scale=1.0):
    return {name: {"median_us": float(np.median(t)) * 1e6 / scale,
                   "p99_us": float(np.percentile(t, 99)) * 1e6 / scale, "calls": len(t)}
            for name, t in times.items()}


def scans(sizes=(10_000, 100_000, 1_000_000), n_queries=64, seed=0):
    """Single-query and 64-query batch scans at each size; a dict of results."""
    faiss = _faiss()
    threads = numba.get_num_threads()
    rng = np.random.default_rng(seed)
    out = {"threads": threads, "faiss": None if faiss is None else faiss.__version__,
           "sizes": {}}
    for n in sizes:
        data = _Data(n, n_queries, rng)
        single = _single_methods(data, faiss, threads)
        batch = _batch_methods(data, faiss, threads)
        _check(single, data.queries[:8], single["numba serial"], f"{n:,} codes")
        _check(batch, [None], batch["numba batch"], f"{n:,} codes, batched")
        rounds = max(1, min(20, 2_000_000 // (n * 4)))
        with progress(f"scan {n:,}", rounds * n_queries + rounds * 8) as bar:
            t1 = _time_in_turn(single, data.queries, rounds, bar)
            tb = _time_in_turn(batch, [None] * 8, rounds, bar)
        out["sizes"][n] = {"single": _summary(t1), "batch_per_query": _summary(tb, n_queries)}
    return out


def end_to_end(n=100_000, dim=384, seed=0):
    """``cache.get`` against encode-alone plus scan-alone, and put throughput."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    encoder = BinaryEncoder(dim)
    warm = BinarySemanticCache(encoder, max_entries=8)
    warm.put_batch(x[:16], [None] * 16)  # load every kernel before the clock runs
    warm.put(x[0], None)
    cache = BinarySemanticCache(encoder, max_entries=n)
    t0 = time.perf_counter()
    cache.put_batch(x, [None] * n)
    fill = n / (time.perf_counter() - t0)
    queries = x[rng.integers(0, n, 200)] + 0.05 * rng.standard_normal((200, dim)).astype(
        np.float32)
    slots, dists = np.empty(1, np.int64), np.empty(1, np.int64)
    codes = encoder.encode(queries)
    methods = {
        "cache.get": lambda i: cache.get(queries[i]),
        "encode": lambda i: encoder.encode(queries[i]),
        "scan": lambda i: cache._scan(codes[i][None, :], slots, dists),
    }
    for i in range(3):
        for m in methods.values():
            m(i)
    with progress("get end to end", 3 * len(queries)) as bar:
        times = _time_in_turn(methods, range(len(queries)), 3, bar)
    summary = _summary(times)
    ratio = summary["cache.get"]["median_us"] / (
        summary["encode"]["median_us"] + summary["scan"]["median_us"])
    rates = {"put_batch_filling": fill}
    more = rng.standard_normal((20_000, dim)).astype(np.float32)
    t0 = time.perf_counter()
    for v in more[:5_000]:
        cache.put(v, None)  # the cache is full: every put evicts
    rates["put_full_one_at_a_time"] = 5_000 / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    cache.put_batch(more, [None] * len(more))
    rates["put_batch_full"] = len(more) / (time.perf_counter() - t0)
    empty = BinarySemanticCache(encoder, max_entries=n)
    t0 = time.perf_counter()
    for v in more[:5_000]:
        empty.put(v, None)
    rates["put_filling_one_at_a_time"] = 5_000 / (time.perf_counter() - t0)
    return {"n": n, "dim": dim, "latency": summary, "get_over_parts": ratio,
            "puts_per_second": rates}


def report(results, out=print):
    scans_ = results["scans"]
    out(f"\nscan latency, 256-bit codes, {scans_['threads']} Numba threads, "
        f"faiss {scans_['faiss'] or 'not installed'} (1 thread)")
    out(f"{'codes':>10}  {'method':<22} {'median us':>10} {'p99 us':>10}  notes")
    for n, res in scans_["sizes"].items():
        single, batch = res["single"], res["batch_per_query"]
        ours = single["numba serial"]["median_us"]
        best = min(v["median_us"] for k, v in single.items() if k.startswith("numba"))
        for name, v in {**single, **{k + " /q": b for k, b in batch.items()}}.items():
            notes = []
            if "faiss flat" == name:
                notes.append(f"ours {v['median_us'] / best:.2f}x faster")
            if name == "numpy":
                notes.append(f"ours {v['median_us'] / ours:.1f}x faster")
            if name.startswith("read roof"):
                notes.append(f"best scan reads at {v['median_us'] / best:.2f}x this speed")
            if name == "faiss flat batch /q" and "numba batch parallel" in batch:
                fastest = min(batch["numba batch"]["median_us"],
                              batch["numba batch parallel"]["median_us"])
                notes.append(f"ours {v['median_us'] / fastest:.2f}x faster per query")
            out(f"{n:>10,}  {name:<22} {v['median_us']:>10.1f} {v['p99_us']:>10.1f}  "
                + "; ".join(notes))
    if "end_to_end" in results:
        e = results["end_to_end"]
        lat = e["latency"]
        out(f"\ncache.get at {e['n']:,} entries, {e['dim']}-d: get {lat['cache.get']['median_us']:.1f} us"
            f" = {e['get_over_parts']:.2f}x (encode {lat['encode']['median_us']:.1f} us + scan "
            f"{lat['scan']['median_us']:.1f} us)")
        for name, rate in e["puts_per_second"].items():
            out(f"  {name:<28} {rate:>12,.0f} puts/s")


def plot(results, path):
    plt = pyplot(files_only=True)
    sizes = sorted(results["scans"]["sizes"])
    names = list(results["scans"]["sizes"][sizes[0]]["single"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        ax.plot(sizes, [results["scans"]["sizes"][n]["single"][name]["median_us"]
                        for n in sizes], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("codes scanned (256-bit)")
    ax.set_ylabel("median latency per query (us)")
    ax.set_title("Top-1 Hamming scan, one query at a time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
