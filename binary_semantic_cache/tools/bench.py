"""``bsc bench``: our scans beside NumPy, faiss and the machine's read speed, like with like.

Serial methods are compared with serial ones (our serial scan, NumPy, faiss on
one thread, the serial read roof), parallel with parallel (our parallel scan,
the parallel read roof; faiss on as many threads in a phase of its own, since
two OpenMP runtimes in one process stall each other). Within a phase the
methods answer the same queries one call at a time, in a fresh random order for
every query, so a noisy neighbour slows all of them alike. The whole
measurement is repeated ``runs`` times; every figure is reported as the median
of the runs with their range. Before timing, each method's best distances are
checked against the serial kernel's.
"""

import importlib.util
import os
import platform
import time

import numba
import numpy as np
from numba import prange

from .. import _kernels as K
from .._core.jit import JIT, JIT_PARALLEL
from .._optional import pyplot
from ..cache import BinarySemanticCache
from ..encoder import BinaryEncoder
from .progress import Silent, progress

N_WORDS = 4  # 256-bit codes
N_QUERIES = 64
# How far below its roof a memory-bound scan's fastest call may land by chance.
ROOF_SLACK = 0.02
# Calls per method and phase: p90 needs about 100, p99 about 1,000 to mean anything.
MIN_CALLS, P99_CALLS = 256, 1024
_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], np.uint8)


class BenchmarkError(ValueError):
    """A measurement that cannot be right, such as a scan faster than its own read roof."""


def bit_count(x):
    """Set bits of each uint64 element: ``np.bitwise_count`` (NumPy 2), else a byte table."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _BYTE_BITS[np.ascontiguousarray(x).view(np.uint8)].reshape(x.shape + (8,)).sum(
        axis=-1, dtype=np.uint8)


# ---------------------------------------------------------------- the read roof

# Kernels that only read the codes, once: no scan can read its input faster.


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


@numba.njit(**JIT)
def _pack_signs_numba(proj, out):
    """The sign packing the library once compiled, kept as the twin NumPy's packing must match."""
    for r in range(proj.shape[0]):
        for w in range(out.shape[1]):
            word = np.uint64(0)
            for b in range(64):
                if proj[r, w * 64 + b] > 0:
                    word |= np.uint64(1) << np.uint64(b)
            out[r, w] = word


def _packers(encoder, rows):
    """Encode ``rows`` with NumPy's packing (the library's) and with the Numba twin."""
    planes = encoder._planes

    def numba_twin(i):
        proj = rows[i:i + 1] @ planes
        out = np.empty((1, encoder.n_words), np.uint64)
        _pack_signs_numba(proj, out)
        return out[0]

    return {"encode, numpy packbits": lambda i: encoder._encode_checked(rows[i]),
            "encode, numba packing": numba_twin}


# ---------------------------------------------------------------- the machine


def machine():
    """What the figures depend on: CPU, threads, last-level cache, library versions."""
    faiss = _faiss()
    return {"cpu": _cpu_name(), "cores": os.cpu_count(), "numba_threads": numba.get_num_threads(),
            "llc_bytes": last_level_cache(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__,
            "faiss": None if faiss is None else faiss.__version__}


def last_level_cache():
    """Bytes of the largest CPU cache (Linux sysfs), or None where that cannot be read."""
    sizes = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    for entry in os.listdir(base) if os.path.isdir(base) else []:
        try:
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KMG")) * scale)
    return max(sizes) if sizes else None


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


# ---------------------------------------------------------------- methods


class _Data:
    def __init__(self, n, rng):
        self.n = n
        self.codes = rng.integers(0, 2**64, size=(N_WORDS, n), dtype=np.uint64, endpoint=False)
        self.rows = np.ascontiguousarray(self.codes.T)
        self.gen = np.ones(n, np.uint32)
        self.tick = np.arange(1, n + 1, dtype=np.uint32)
        # Every code in the default namespace: slot i at place i of its segment.
        self.apos = np.arange(n, dtype=np.int32)
        self.members = np.arange(n, dtype=np.int32)
        queries = rng.integers(0, 2**64, size=(N_QUERIES, N_WORDS), dtype=np.uint64,
                               endpoint=False)
        near = rng.integers(0, n, size=N_QUERIES // 2)
        queries[: len(near)] = self.rows[near] ^ np.uint64(0b1011)  # near duplicates
        self.queries = queries


def _faiss_index(data, faiss):
    index = faiss.IndexBinaryFlat(64 * N_WORDS)
    index.add(data.rows.view(np.uint8))
    return index


def _phases(data, faiss, index, threads):
    """``{phase: {method: call(query) -> best distance}}``: like with like in each phase."""
    codes, n, gen, tick, rows = data.codes, data.n, data.gen, data.tick, data.rows
    space = (data.apos, data.members, 0, n)
    serial = {
        "numba serial": lambda q: K._scan_top1(codes, n, q, gen, tick, *space)[1],
        "numpy": lambda q: int(bit_count(rows ^ q).sum(axis=1, dtype=np.int64).min()),
        "read roof serial": lambda q: _stream_xor(codes, n),
    }
    phases = {"serial": serial}
    if index is not None:
        serial["faiss 1 thread"] = _on_threads(faiss, 1, lambda q: int(
            index.search(q.view(np.uint8)[None, :], 1)[0][0, 0]))
    if threads > 1:
        phases["parallel"] = {
            "numba parallel": lambda q: K._scan_top1_parallel(codes, n, q, gen, tick,
                                                              *space, threads)[1],
            "read roof parallel": lambda q: _stream_xor_parallel(codes, n, threads),
        }
        if index is not None:
            phases["faiss parallel"] = {f"faiss {threads} threads": _on_threads(
                faiss, threads, lambda q: int(index.search(q.view(np.uint8)[None, :], 1)[0][0, 0]))}
    return phases


def _batch_phases(data, faiss, index, threads):
    """Per-query cost of one batch of ``N_QUERIES``: ``{phase: {method: call(_)}}``."""
    codes, n, gen, tick, queries = data.codes, data.n, data.gen, data.tick, data.queries
    space = (data.apos, data.members, 0, n)
    slots = np.empty(len(queries), np.int64)
    dists = np.empty(len(queries), np.int64)

    def ours(parallel):
        def call(_):
            if parallel:
                K._scan_batch_parallel(codes, n, queries, gen, tick, *space, slots, dists,
                                       threads)
            else:
                K._scan_batch(codes, n, queries, gen, tick, *space, slots, dists)
            return dists.copy()
        return call

    phases = {"serial": {"numba batch serial": ours(False)}}
    search = None if index is None else (
        lambda _: index.search(queries.view(np.uint8), 1)[0][:, 0])
    if index is not None:
        phases["serial"]["faiss batch 1 thread"] = _on_threads(faiss, 1, search)
    if threads > 1:
        phases["parallel"] = {"numba batch parallel": ours(True)}
        if index is not None:
            phases["faiss parallel"] = {f"faiss batch {threads} threads": _on_threads(
                faiss, threads, search)}
    return phases


def _on_threads(faiss, threads, call):
    def run(x):
        faiss.omp_set_num_threads(threads)
        return call(x)
    return run


def _check(methods, inputs, reference, what):
    """Every method but the roofs answers like ``reference``, or BenchmarkError."""
    want = [reference(x) for x in inputs]
    for name, method in methods.items():
        if "roof" in name:
            continue
        got = [method(x) for x in inputs]
        if not all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got, want)):
            raise BenchmarkError(f"{name} disagrees with numba serial on {what}")


def _time_in_random_order(methods, inputs, rounds, rng, bar):
    """Per-call seconds of each method; a fresh random order of the methods for every input."""
    times = {name: [] for name in methods}
    names = list(methods)
    for method in methods.values():  # load or compile each kernel off the clock
        method(inputs[0])
    for _ in range(rounds):
        for x in inputs:
            for k in rng.permutation(len(names)):
                name = names[k]
                t0 = time.perf_counter()
                methods[name](x)
                times[name].append(time.perf_counter() - t0)
            bar.update()
    return times


def _figures(seconds, scale=1):
    calls = len(seconds)
    us = np.asarray(seconds) * 1e6 / scale
    return {"median_us": float(np.median(us)), "p90_us": float(np.percentile(us, 90)),
            "p99_us": float(np.percentile(us, 99)) if calls >= P99_CALLS else None,
            "fastest_us": float(us.min()), "calls": calls}


# ---------------------------------------------------------------- runs


def scans(sizes, *, runs=3, seed=0):
    """Single-query and batched scans at each size, ``runs`` times; a JSON-ready dict."""
    faiss = _faiss()
    threads = numba.get_num_threads()
    rng = np.random.default_rng(seed)
    llc = last_level_cache()
    out = {}
    for n in sizes:
        data = _Data(n, rng)
        index = None if faiss is None else _faiss_index(data, faiss)
        single = _phases(data, faiss, index, threads)
        batch = _batch_phases(data, faiss, index, threads)
        reference = single["serial"]["numba serial"]
        for methods in single.values():
            _check(methods, data.queries[:8], reference, f"{n:,} codes")
        for methods in batch.values():
            _check(methods, [None], batch["serial"]["numba batch serial"], f"{n:,} codes, batched")
        rounds = -(-MIN_CALLS // N_QUERIES) if n >= 1_000_000 else -(-P99_CALLS // N_QUERIES)
        batch_rounds = max(8, rounds)
        nbytes = n * N_WORDS * 8
        size = {"bytes": nbytes, "memory_roof": llc is not None and nbytes >= 4 * llc,
                "single": {}, "batch_per_query": {}}
        work = runs * (rounds * N_QUERIES * len(single) + batch_rounds * len(batch))
        with progress(f"scan {n:,}", work) as bar:
            for _ in range(runs):
                for methods in single.values():
                    for name, t in _time_in_random_order(methods, data.queries, rounds, rng,
                                                         bar).items():
                        _add(size["single"], name, _figures(t))
                for methods in batch.values():
                    for name, t in _time_in_random_order(methods, [None], batch_rounds, rng,
                                                         bar).items():
                        _add(size["batch_per_query"], name, _figures(t, N_QUERIES))
        out[str(n)] = size
    return out


def _add(table, name, figures):
    """Append one run's figures: each field becomes a list over runs."""
    row = table.setdefault(name, {key: [] for key in figures})
    for key, value in figures.items():
        row[key].append(value)


def measure_end_to_end(*, runs=3, n=100_000, dim=384, seed=0):
    """``cache.get`` against encode-alone plus scan-alone, and put throughput, ``runs`` times."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    encoder = BinaryEncoder(dim)
    warm = BinarySemanticCache(encoder, max_entries=8)
    warm.put_batch(x[:16], [None] * 16)  # load every kernel before the clock runs
    warm.put(x[0], None)
    warm.get(x[0])
    queries = x[rng.integers(0, n, 200)] + 0.05 * rng.standard_normal((200, dim)).astype(
        np.float32)
    codes = encoder.encode(queries)
    more = rng.standard_normal((20_000, dim)).astype(np.float32)
    out = {"n": n, "dim": dim, "latency": {}, "puts_per_second": {}}
    slots, dists = np.empty(1, np.int64), np.empty(1, np.int64)
    packers = _packers(encoder, queries)
    if not all(np.array_equal(*(pack(i) for pack in packers.values())) for i in range(8)):
        raise BenchmarkError("NumPy packing and its Numba twin disagree")
    with progress("end to end", runs) as bar:
        for _ in range(runs):
            cache = BinarySemanticCache(encoder, max_entries=n)
            t0 = time.perf_counter()
            cache.put_batch(x, [None] * n)
            rates = {"put_batch filling": n / (time.perf_counter() - t0)}
            methods = {
                "cache.get": lambda i: cache.get(queries[i]),
                "encode": lambda i: encoder.encode(queries[i]),
                "scan": lambda i: cache._index.top1(codes[i][None, :], 1, slots, dists),
                **_packers(encoder, queries),
            }
            for name, t in _time_in_random_order(methods, range(len(queries)), 3, rng,
                                                 Silent()).items():
                _add(out["latency"], name, _figures(t))
            t0 = time.perf_counter()
            for v in more[:5_000]:
                cache.put(v, None)  # the cache is full: every put evicts
            rates["put one at a time, full"] = 5_000 / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            cache.put_batch(more, [None] * len(more))
            rates["put_batch full"] = len(more) / (time.perf_counter() - t0)
            empty = BinarySemanticCache(encoder, max_entries=n)
            t0 = time.perf_counter()
            for v in more[:5_000]:
                empty.put(v, None)
            rates["put one at a time, filling"] = 5_000 / (time.perf_counter() - t0)
            for name, rate in rates.items():
                out["puts_per_second"].setdefault(name, []).append(rate)
            bar.update()
    return out


def measure_persistence(*, runs=3, n=1_000_000, dim=64, seed=0):
    """Seconds to save ``n`` entries, and to load them mapped or copied, checked or not."""
    import shutil
    import tempfile

    block = np.random.default_rng(seed).standard_normal((100_000, dim)).astype(np.float32)
    cache = BinarySemanticCache(BinaryEncoder(dim), max_entries=n)
    for i in range(n // len(block)):
        cache.put_batch(block, [f"answer {i}-{j}" for j in range(len(block))])
    folder = tempfile.mkdtemp(prefix="bsc-bench-")
    out = {"n": n, "dim": dim, "seconds": {}}
    try:
        path = os.path.join(folder, "cache")
        cache.save(path)
        BinarySemanticCache.load(path, verify=False).close()  # the load-time check compiled
        steps = {"save": lambda: cache.save(path)}
        for mmap in (True, False):
            for verify in (True, False):
                steps[f"load {'mapped' if mmap else 'into memory'}, "
                      f"verify={verify}"] = (lambda m=mmap, v=verify: BinarySemanticCache.load(
                          path, mmap=m, verify=v).close())
        with progress("save and load", runs * len(steps)) as bar:
            for _ in range(runs):
                for name in np.random.default_rng().permutation(list(steps)):
                    t0 = time.perf_counter()
                    steps[name]()
                    out["seconds"].setdefault(name, []).append(time.perf_counter() - t0)
                    bar.update()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def run(sizes, *, runs=3, end_to_end=True, persistence=False, namespaces=False, llm=None,
        seed=0):
    """Everything ``bsc bench`` measures, as one JSON-ready dict.

    ``llm`` times hits through CachedOpenAI; None does so with ``end_to_end``
    when ``openai`` is installed.
    """
    results = {"machine": machine(), "runs": runs, "scans": scans(sizes, runs=runs, seed=seed)}
    if end_to_end:
        results["end_to_end"] = measure_end_to_end(runs=runs, seed=seed)
    if persistence:
        results["persistence"] = measure_persistence(runs=runs, seed=seed)
    if namespaces:
        from .bench_spaces import measure_namespaces

        results["namespaces"] = measure_namespaces(runs=runs, seed=seed)
    if llm is None:
        llm = end_to_end and importlib.util.find_spec("openai") is not None
    if llm:
        from .bench_llm import measure_llm

        results["llm"] = measure_llm(runs=runs, seed=seed)
    return results


def check(results):
    """Raise BenchmarkError if a scan read its codes faster than its own read roof could.

    Serial against the serial roof, parallel against the parallel one, fastest
    call against fastest call of each run: a scan does everything the roof
    does and more, so beating it means the measurement is broken. Codes far
    larger than the cache bring both to the memory's own speed, where the
    fastest calls of the two differ by chance: there the scan may come within
    ``ROOF_SLACK`` of its roof, below it.
    """
    for n, size in results["scans"].items():
        single = size["single"]
        for scan, roof in (("numba serial", "read roof serial"),
                           ("numba parallel", "read roof parallel")):
            if scan not in single or roof not in single:
                continue
            for run, (s, r) in enumerate(zip(single[scan]["fastest_us"],
                                             single[roof]["fastest_us"])):
                if s < r * (1 - ROOF_SLACK if size.get("memory_roof") else 1):
                    raise BenchmarkError(
                        f"{n} codes, run {run + 1}: {scan} took {s:.1f} us, less than its "
                        f"read roof's {r:.1f} us; the roof or the timing is wrong")


# ---------------------------------------------------------------- report


def spread(values, spec=".1f"):
    """``median (min-max)`` of a figure over runs; one value alone when there is one run."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mid = format(float(np.median(values)), spec)
    if len(values) == 1:
        return mid
    return f"{mid} ({format(min(values), spec)}-{format(max(values), spec)})"


def gbps(size_bytes, us_values):
    """Read speed in GB/s for each run's time."""
    return [size_bytes / (us * 1e-6) / 1e9 for us in us_values]


def notes(size, name):
    """What a row is compared with: its roof, its faiss twin (like with like)."""
    single = size["single"]
    med = lambda m: float(np.median(single[m]["median_us"]))  # noqa: E731
    fast = lambda m: float(np.median(single[m]["fastest_us"]))  # noqa: E731
    roof_kind = "DRAM read roof" if size["memory_roof"] else "read roof (cache-resident)"
    out = []
    if name == "numba serial" and "read roof serial" in single:
        out.append(f"{fast('read roof serial') / fast(name):.2f}x the serial {roof_kind} speed")
    if name == "numba parallel" and "read roof parallel" in single:
        out.append(f"{fast('read roof parallel') / fast(name):.2f}x the parallel {roof_kind} "
                   "speed")
    if name == "faiss 1 thread":
        out.append(f"numba serial is {med(name) / med('numba serial'):.2f}x faster")
    if name.startswith("faiss") and name.endswith("threads") and "numba parallel" in single:
        out.append(f"numba parallel is {med(name) / med('numba parallel'):.2f}x faster")
    if name == "numpy":
        out.append(f"numba serial is {med(name) / med('numba serial'):.1f}x faster")
    return "; ".join(out)


def report(results, out=print):
    m = results["machine"]
    out(f"\nscans of 256-bit codes, {results['runs']} runs (median, range over runs); "
        f"{m['cpu']}, {m['numba_threads']} Numba threads, last-level cache "
        f"{(m['llc_bytes'] or 0) / 2**20:.0f} MiB, faiss {m['faiss'] or 'not installed'}")
    out(f"{'codes':>10}  {'method':<24} {'median us':>22} {'p90 us':>10} {'p99 us':>10} "
        f"{'GB/s':>7}  notes")
    for n, size in results["scans"].items():
        rows = list(size["single"].items()) + [(k + " /query", v) for k, v in
                                                size["batch_per_query"].items()]
        for name, v in rows:
            speed = "" if name.endswith("/query") else format(
                float(np.median(gbps(size["bytes"], v["median_us"]))), ".1f")
            out(f"{int(n):>10,}  {name:<24} {spread(v['median_us']):>22} "
                f"{spread(v['p90_us']):>10} {spread(v['p99_us']):>10} {speed:>7}  "
                + notes(size, name))
    if "end_to_end" in results:
        e = results["end_to_end"]
        lat = e["latency"]
        out(f"\nat {e['n']:,} entries, {e['dim']}-d: cache.get "
            f"{spread(lat['cache.get']['median_us'])}"
            f" us; encode {spread(lat['encode']['median_us'])} us; scan "
            f"{spread(lat['scan']['median_us'])} us")
        for name, rates in e["puts_per_second"].items():
            out(f"  {name:<28} {spread(rates, ',.0f'):>28} puts/s")
    if "persistence" in results:
        p = results["persistence"]
        out(f"\n{p['n']:,} entries, {p['dim']}-d: seconds")
        for name, seconds in p["seconds"].items():
            out(f"  {name:<36} {spread(seconds, '.3f'):>24}")
    if "namespaces" in results:
        from .bench_spaces import report as report_spaces

        report_spaces(results["namespaces"], out)
    if "llm" in results:
        from .bench_llm import report as report_llm

        report_llm(results["llm"], out)


def plot(results, path):
    plt = pyplot(files_only=True)
    sizes = sorted(results["scans"], key=int)
    names = list(results["scans"][sizes[0]]["single"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        ax.plot([int(n) for n in sizes],
                [float(np.median(results["scans"][n]["single"][name]["median_us"]))
                 for n in sizes], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("codes scanned (256-bit)")
    ax.set_ylabel("median latency per query (us)")
    ax.set_title(f"Top-1 Hamming scan, one query at a time ({results['machine']['cpu']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
