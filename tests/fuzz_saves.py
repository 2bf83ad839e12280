"""Damage one field of a valid save, load it with verify=False, then use the cache.

Run by tests/test_damaged_saves.py in a subprocess, so that a crash or a hang
fails that test instead of killing the test run::

    python tests/fuzz_saves.py WORKDIR CASES SEED

Every case changes one field: a header field, or one element of one array of
``entries.bin``. The load may raise a ``CacheError``; otherwise 100 random
operations follow, each of which may raise a ``CacheError`` and nothing else.
Any other exception prints the case as JSON and exits 1; a case that runs
longer than ``CASE_SECONDS`` dumps every thread's stack and exits 1.
"""

import faulthandler
import json
import random
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache, CacheError
from binary_semantic_cache.persistence import format as F

CASE_SECONDS = 60
DIM = 12


class Clock:
    def __init__(self):
        self.now = 5_000.0

    def __call__(self):
        return self.now


def base_saves(work):
    """Valid saves covering every array: expiry, int8 and float16 copies, free slots."""
    rng = np.random.default_rng(0)
    out = []
    for name, options in (("plain", {}), ("int8", {"rescore": "int8"}),
                          ("half", {"rescore": "float16"})):
        clock = Clock()
        cache = BinarySemanticCache(BinaryEncoder(DIM, 128), max_entries=24, clock=clock,
                                    **options)
        x = rng.standard_normal((30, DIM))
        ids = cache.put_batch(x[:20], [f"{name} {i}" for i in range(20)])
        for i in range(20, 30):
            ids.append(cache.put(x[i], {"i": i}, ttl=10 + i))
        for i in range(0, 30, 4):
            cache.get(x[i])
        for entry_id in ids[1:8:3]:
            cache.delete(entry_id)
        # Namespaces and exact keys, so their arrays and the key table are in the file.
        cache.put_batch(x[:3] + 0.5, ["n0", "n1", "n2"], namespace="tenant", keys=["a", "b", "c"])
        cache.put(None, "key only", namespace="other", key=b"k", ttl=15)
        cache.put(x[5], "keyed", key="d")
        path = work / name
        cache.save(path)
        data = next(p for p in path.iterdir() if p.name.startswith("data-"))
        out.append((path, data / "entries.bin", (data / "entries.bin").read_bytes()))
    return out


def header_fields():
    """``(offset, struct format)`` of every header field."""
    fields, offset = [], 0
    for count, code in _tokens(F._HEADER.format.lstrip("<")):
        if code == "s":
            fields.append((offset, f"<{count}s"))
            offset += count
        else:
            size = struct.calcsize("<" + code)
            fields += [(offset + i * size, "<" + code) for i in range(count)]
            offset += count * size
    return fields


def _tokens(fmt):
    number = ""
    for ch in fmt:
        if ch.isdigit():
            number += ch
        else:
            yield int(number or 1), ch
            number = ""


def corrupt(raw, rng):
    """One field of ``raw`` changed; returns the new bytes and what was done."""
    raw = bytearray(raw)
    header = F.unpack_header(bytes(raw[:F.HEADER_BYTES]), "fuzz")
    layout, _ = header.layout()
    if rng.random() < 0.3:
        offset, fmt = rng.choice(header_fields())
        field = f"header@{offset}"
    else:
        name = rng.choice(sorted(layout))
        offset0, dtype, shape = layout[name]
        n = int(np.prod(shape))
        if n == 0:
            return bytes(raw), "nothing"
        i = rng.randrange(min(n, header.slots + 2) if name != "codes" else n)
        code = _STRUCT[dtype.kind, dtype.itemsize]
        offset, fmt, field = offset0 + i * dtype.itemsize, "<" + code, f"{name}[{i}]"
    old = struct.unpack_from(fmt, raw, offset)[0]
    value = pick_value(fmt, old, header.slots, rng)
    struct.pack_into(fmt, raw, offset, value)
    return bytes(raw), f"{field}: {old!r} -> {value!r}"


_STRUCT = {("i", 1): "b", ("u", 1): "B", ("u", 2): "H", ("i", 4): "i", ("u", 4): "I", ("i", 8): "q",
           ("u", 8): "Q", ("f", 4): "f", ("f", 8): "d"}


def pick_value(fmt, old, slots, rng):
    code = fmt[-1]
    if code == "s":
        return bytes(rng.randrange(256) for _ in range(struct.calcsize(fmt)))
    if code in "fd":
        value = rng.choice([float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e300,
                            old * 2, old + 1, -old, rng.uniform(-1e4, 1e4)])
        with np.errstate(over="ignore"):
            return float(np.float32(value)) if code == "f" else value
    bits = 8 * struct.calcsize(fmt)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if code.islower() else (0, (1 << bits) - 1)
    value = rng.choice([0, 1, -1, -2, 2, slots - 1, slots, slots + 1, old + 1, old - 1,
                        old ^ (1 << rng.randrange(bits)), rng.randrange(lo, hi + 1), lo, hi])
    return (value - lo) % (hi - lo + 1) + lo  # wrapped into the field's range


def operate(cache, clock, rng, scratch, trace):
    """100 random operations, each named in ``trace`` before it runs.

    CacheErrors are allowed; anything else propagates.
    """
    ids = []
    for _ in range(100):
        op = rng.choice(["get", "get", "get_batch", "search", "put", "put_ttl", "put_batch",
                         "delete", "advance", "len", "stats", "contains", "save", "get_ns",
                         "get_exact", "put_key", "clear_ns", "namespaces"])
        trace.append(op)
        x = np.random.default_rng(rng.randrange(1 << 30)).standard_normal((3, DIM))
        try:
            if op == "get":
                cache.get(x[0], threshold=rng.choice([None, -1.0, 0.5]))
            elif op == "get_batch":
                cache.get_batch(x, threshold=-1.0)
            elif op == "search":
                cache.search(x[0], k=rng.randrange(1, 30))
            elif op == "put":
                ids.append(cache.put(x[0], "new"))
            elif op == "put_ttl":
                ids.append(cache.put(x[0], "short", ttl=rng.uniform(0.5, 30)))
            elif op == "put_batch":
                ids += cache.put_batch(x, ["a", "b", "c"])
            elif op == "delete":
                cache.delete(rng.choice(ids) if ids and rng.random() < 0.7
                             else rng.randrange(1 << 40))
            elif op == "advance":
                clock.now += rng.uniform(0, 20)
            elif op == "len":
                len(cache)
            elif op == "stats":
                cache.stats()
            elif op == "contains":
                rng.randrange(1 << 40) in cache
            elif op == "get_ns":
                cache.get(x[0], threshold=-1.0, namespace=rng.choice(["tenant", "other", "x"]))
            elif op == "get_exact":
                cache.get_exact(rng.choice(["a", "b", "c", "d", b"k"]),
                                namespace=rng.choice([None, "tenant", "other"]))
            elif op == "put_key":
                ids.append(cache.put(None if rng.random() < 0.3 else x[0], "keyed",
                                     key=rng.choice(["a", "d", "new"]),
                                     namespace=rng.choice([None, "tenant", "other"])))
            elif op == "clear_ns":
                cache.clear(namespace=rng.choice([None, "tenant", "other"]))
            elif op == "namespaces":
                cache.namespaces()
            elif op == "save" and rng.random() < 0.2:
                cache.save(scratch)
                BinarySemanticCache.load(scratch, clock=clock)
        except CacheError:
            pass


def main():
    work, cases, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    faulthandler.enable()
    rng = random.Random(seed)
    saves = base_saves(work)
    outcomes = {"load refused": 0, "used": 0}
    for case in range(cases):
        faulthandler.dump_traceback_later(CASE_SECONDS, exit=True)
        path, file, raw = rng.choice(saves)
        damaged, what = corrupt(raw, rng)
        file.write_bytes(damaged)
        clock, trace = Clock(), ["load"]
        try:
            try:
                cache = BinarySemanticCache.load(path, verify=False, mmap=rng.random() < 0.5,
                                                 clock=clock)
            except CacheError:
                outcomes["load refused"] += 1
                continue
            outcomes["used"] += 1
            shutil.rmtree(work / "scratch", ignore_errors=True)
            operate(cache, clock, rng, work / "scratch", trace)
        except BaseException as exc:
            print(json.dumps({"case": case, "file": str(file), "damage": what, "op": trace[-1],
                              "error": repr(exc)}), flush=True)
            raise
        finally:
            file.write_bytes(raw)
    faulthandler.cancel_dump_traceback_later()
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    main()
