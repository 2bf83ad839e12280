"""save/load: exact round trips, memory mapping, named errors, atomic saves."""

import hashlib
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binary_semantic_cache import (
    BinaryEncoder,
    BinarySemanticCache,
    ByteOrderError,
    CacheClosedError,
    CacheError,
    CacheFileNotFoundError,
    ChecksumError,
    CorruptFileError,
    EncoderMismatchError,
    FormatVersionError,
    TruncatedFileError,
    UnsafeResponseError,
    persistence,
)
from binary_semantic_cache._core.index import entry_id

from .conftest import FakeClock, check_invariants, examples

DIM = 24
VECTORS = np.random.default_rng(21).standard_normal((16, DIM))


def data_dir(path):
    (found,) = [p for p in Path(path).iterdir() if p.name.startswith("data-")]
    return found


def digests(path):
    return {p.relative_to(path): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(path).rglob("*")) if p.is_file()}


def state(cache):
    """Everything observable about a cache, for comparing two of them."""
    idx = cache._index
    order = check_invariants(idx)
    return (cache.stats(), cache.namespaces(), [entry_id(idx.gen[s], s) for s in order],
            [(entry_id(idx.gen[s], s), cache._responses[s], float(idx.created[s]),
              float(idx.seen[s]), int(idx.count[s]), idx.codes[:, s].tolist(),
              cache._entry(s, 1.0).namespace, cache._entry(s, 1.0).key) for s in order])


SPACES = [None, "tenant", "ünï"]
KEYS = ["k0", b"k0", "k1", "a" * 4096]


def lookups(cache):
    found = [cache.search(v, k=3, namespace=n) for v in VECTORS for n in SPACES]
    hits = [cache.get(v, namespace=n) for v in VECTORS for n in SPACES]
    exact = [cache.get_exact(k, namespace=n) for k in KEYS for n in SPACES]
    return found, hits, exact


ops = st.lists(st.tuples(st.sampled_from(["put", "put_ttl", "get", "delete", "tick", "put_ns",
                                          "put_key_only", "get_exact", "clear_ns"]),
                         st.integers(0, len(VECTORS) - 1)), max_size=60)


@settings(max_examples=examples(40))
@given(ops, st.integers(1, 12), st.booleans())
def test_round_trip_is_exact(tmp_path_factory, ops, capacity, use_mmap):
    clock = FakeClock()
    cache = BinarySemanticCache(BinaryEncoder(DIM, 128), max_entries=capacity,
                                similarity_threshold=0.9, clock=clock)
    ids = []
    for op, k in ops:
        if op == "put":
            ids.append(cache.put(VECTORS[k], {"k": k, "text": f"answer {k}"}))
        elif op == "put_ttl":
            ids.append(cache.put(VECTORS[k], f"short {k}", ttl=1 + k % 3))
        elif op == "get":
            cache.get(VECTORS[k])
        elif op == "delete" and ids:
            cache.delete(ids[k % len(ids)])
        elif op == "put_ns":
            ids.append(cache.put(VECTORS[k], [k], namespace=SPACES[k % 3], key=KEYS[k % 4]))
        elif op == "put_key_only":
            ids.append(cache.put(None, f"exact {k}", namespace=SPACES[k % 3], key=KEYS[k % 4],
                                 ttl=2.0 if k % 2 else None))
        elif op == "get_exact":
            cache.get_exact(KEYS[k % 4], namespace=SPACES[k % 3])
        elif op == "clear_ns":
            cache.clear(namespace=SPACES[k % 3])
        else:
            clock.advance(0.75)
    path = tmp_path_factory.mktemp("save")
    cache.save(path)
    loaded = BinarySemanticCache.load(path, mmap=use_mmap, clock=clock)
    assert state(loaded) == state(cache)
    assert [i in loaded for i in ids] == [i in cache for i in ids]
    # The two caches also evolve the same way afterwards.
    assert lookups(loaded) == lookups(cache)
    clock.advance(2)
    for k in range(0, len(VECTORS), 3):
        assert loaded.put(VECTORS[k], k) == cache.put(VECTORS[k], k)
        kw = dict(namespace=SPACES[k % 3], key=KEYS[k % 4])
        assert loaded.put(VECTORS[k], k, **kw) == cache.put(VECTORS[k], k, **kw)
    assert state(loaded) == state(cache)


RESPONSES = ["text", "", "ünïcode ✓", b"\x00bytes", None, True, False, 0, -7, 2**80, 1.5,
             -0.0, [], {}, [1, "a", None, [2.5]], {"nested": {"list": [1, 2], "none": None}}]


def test_responses_round_trip_exactly_without_pickle(tmp_path):
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=len(RESPONSES))
    ids = cache.put_batch(np.random.default_rng(0).standard_normal((len(RESPONSES), DIM)),
                          RESPONSES)
    cache.save(tmp_path)
    loaded = BinarySemanticCache.load(tmp_path)
    for stored_id, want in zip(ids, RESPONSES):
        got = loaded._responses[stored_id & 0xFFFFFFFF]
        assert type(got) is type(want) and got == want
        if isinstance(want, float):
            assert math.copysign(1, got) == math.copysign(1, want)


@pytest.mark.parametrize("response", [(1, 2), {1, 2}, {1: "int key"}, object(), float("nan"),
                                      [1, (2,)], np.float32(1.0)])
def test_unsafe_responses_need_pickle_on_both_sides(tmp_path, response):
    cache = BinarySemanticCache(BinaryEncoder(DIM))
    entry_id = cache.put(VECTORS[0], response)
    with pytest.raises(UnsafeResponseError, match=f"entry id {entry_id}.*allow_pickle=True"):
        cache.save(tmp_path / "plain")
    assert not (tmp_path / "plain" / "manifest.json").exists()
    if isinstance(response, object) and type(response) is object:
        return  # pickles, but compares by identity
    cache.save(tmp_path / "pickled", allow_pickle=True)
    with pytest.raises(UnsafeResponseError, match="allow_pickle=True"):
        BinarySemanticCache.load(tmp_path / "pickled")
    loaded = BinarySemanticCache.load(tmp_path / "pickled", allow_pickle=True)
    got = loaded.get(VECTORS[0]).response
    assert type(got) is type(response)
    assert got == response or (got != got and response != response)


def test_mmap_scans_the_file_in_place_and_never_writes_it(tmp_path):
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=20)
    ids = cache.put_batch(VECTORS, [f"r{i}" for i in range(len(VECTORS))])
    cache.save(tmp_path)
    before = digests(tmp_path)
    loaded = BinarySemanticCache.load(tmp_path)
    codes = loaded._index.codes
    assert loaded.is_mapped and not codes.flags.owndata
    assert "mapped" in repr(loaded)
    assert loaded.get(VECTORS[3]).response == "r3"  # hit: writes recency in private pages
    assert loaded.delete(ids[4])
    assert loaded.is_mapped and loaded._index.codes is codes
    loaded.put(-VECTORS[0], "new")  # copies the arrays into memory before writing
    assert not loaded.is_mapped and loaded._index.codes.flags.owndata
    assert digests(tmp_path) == before
    assert not BinarySemanticCache.load(tmp_path, mmap=False).is_mapped
    again = BinarySemanticCache.load(tmp_path)
    assert state(again) == state(BinarySemanticCache.load(tmp_path, mmap=False))
    assert ids[4] in again


def test_close_releases_the_mapping_and_later_calls_raise(tmp_path):
    cache = BinarySemanticCache(BinaryEncoder(DIM))
    cache.put(VECTORS[0], "x")
    cache.save(tmp_path)
    with BinarySemanticCache.load(tmp_path) as loaded:
        assert loaded.get(VECTORS[0]).response == "x"
        mappings = list(loaded._mappings)
    assert loaded.closed and len(mappings) == 2 and all(m.closed for m in mappings)
    calls = [lambda: loaded.get(VECTORS[0]), lambda: loaded.get_batch(VECTORS[:2]),
             lambda: loaded.put(VECTORS[1], "y"), lambda: loaded.search(VECTORS[0]),
             lambda: len(loaded), loaded.stats, lambda: loaded.delete(1), loaded.clear,
             lambda: 5 in loaded, lambda: loaded.is_mapped, lambda: loaded.save(tmp_path / "b"),
             lambda: loaded.__enter__()]
    for call in calls:
        with pytest.raises(CacheClosedError, match="closed"):
            call()
    loaded.close()  # safe to repeat
    assert repr(loaded) == "BinarySemanticCache(closed, max_entries=1000)"
    with cache as same:  # an in-memory cache closes on leaving the block too
        assert same is cache and len(cache) == 1
    assert cache.closed
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("other", [dict(seed=7), dict(embedding_dim=DIM + 1),
                                   dict(code_bits=512)])
def test_other_encoder_is_refused(tmp_path, other):
    cache = BinarySemanticCache(BinaryEncoder(DIM))
    cache.put(VECTORS[0], "x")
    cache.save(tmp_path)
    args = dict(embedding_dim=DIM, code_bits=256, seed=42) | other
    name = next(iter(other))
    with pytest.raises(EncoderMismatchError, match=name):
        BinarySemanticCache.load(tmp_path, encoder=BinaryEncoder(**args))
    assert BinarySemanticCache.load(tmp_path, encoder=BinaryEncoder(DIM)).get(VECTORS[0])


def test_saving_again_replaces_the_save(tmp_path):
    cache = BinarySemanticCache(BinaryEncoder(DIM))
    cache.put(VECTORS[0], "first")
    cache.save(tmp_path)
    cache.put(VECTORS[1], "second")
    cache.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".bsc-journal", ".bsc-lock", data_dir(tmp_path).name, "manifest.json"])
    # Nothing of ours is left to remove.
    assert (tmp_path / ".bsc-journal").read_text().splitlines()[1:] == []
    assert len(BinarySemanticCache.load(tmp_path)) == 2


def test_save_refuses_paths_it_would_clobber(tmp_path):
    cache = BinarySemanticCache(BinaryEncoder(DIM))
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        cache.save(tmp_path / "file")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="other files"):
        cache.save(tmp_path / "dir")
    assert (tmp_path / "dir" / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- damaged saves


@pytest.fixture
def saved(tmp_path):
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=40, ttl=100)
    cache.put_batch(VECTORS[4:], [{"i": i} for i in range(4, len(VECTORS))])
    # Every section of the format: namespaces, keys of both types, a key-only entry.
    cache.put_batch(VECTORS[:3], [0, 1, 2], namespace="tenant", keys=["a", b"b", "c"])
    cache.put(None, 3, namespace="ünï", key="only a key")
    cache.save(tmp_path)
    return tmp_path


def load_fails(path, error, **kwargs):
    before = digests(path)
    with pytest.raises(CacheError) as info:
        BinarySemanticCache.load(path, **kwargs)
    assert isinstance(info.value, error), repr(info.value)
    assert digests(path) == before  # a failed load changes nothing on disk
    return str(info.value)


def rewrite_manifest(path):
    """Make the manifest agree with the files again, as a careless copy would."""
    import json

    manifest = json.loads((path / "manifest.json").read_text())
    for name in ("entries.bin", "responses.bin"):
        data = (data_dir(path) / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data),
                                   "sha256": hashlib.sha256(data).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(manifest))


def patch_entries(path, offset, fmt, value):
    """Pack ``value`` at ``offset`` of entries.bin, and make the manifest agree."""
    import struct

    file = data_dir(path) / "entries.bin"
    raw = bytearray(file.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    file.write_bytes(bytes(raw))
    rewrite_manifest(path)


@pytest.mark.parametrize("name", ["entries.bin", "responses.bin"])
def test_truncation_anywhere_is_named(saved, name):
    file = data_dir(saved) / name
    full = file.read_bytes()
    cuts = {0, 1, 7, 8, 100, 511, 512, 513, len(full) // 2, len(full) - 1}
    cuts |= set(range(0, len(full), max(1, len(full) // 40)))
    for cut in sorted(c for c in cuts if c < len(full)):
        file.write_bytes(full[:cut])
        message = load_fails(saved, TruncatedFileError)
        assert f"expected {len(full):,} bytes, got {cut:,}" in message
        rewrite_manifest(saved)  # sizes now agree: the file's own structure must catch it
        load_fails(saved, CorruptFileError, verify=False)
        file.write_bytes(full)
        rewrite_manifest(saved)
    assert len(BinarySemanticCache.load(saved)) == len(VECTORS)


@pytest.mark.parametrize("name", ["entries.bin", "responses.bin"])
def test_flipped_bytes_fail_the_checksum(saved, name):
    file = data_dir(saved) / name
    full = bytearray(file.read_bytes())
    rng = random.Random(name)
    for _ in range(25):
        at = rng.randrange(len(full))
        damaged = full.copy()
        damaged[at] ^= 1 << rng.randrange(8)
        file.write_bytes(bytes(damaged))
        load_fails(saved, ChecksumError)
    file.write_bytes(bytes(full))


def test_version_byte_order_and_magic_are_checked(saved):
    file = data_dir(saved) / "entries.bin"
    full = file.read_bytes()
    cases = [(8, (99).to_bytes(4, "little"), FormatVersionError),
             (12, (0x01020304).to_bytes(4, "big"), ByteOrderError),
             (0, b"NOTACACH", CorruptFileError)]
    for offset, patch, error in cases:
        file.write_bytes(full[:offset] + patch + full[offset + len(patch):])
        load_fails(saved, ChecksumError)
        rewrite_manifest(saved)
        load_fails(saved, error)
        file.write_bytes(full)
        rewrite_manifest(saved)


def test_manifest_problems_are_named(saved):
    manifest = saved / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text.replace('"version": 2', '"version": 3'))
    load_fails(saved, FormatVersionError)
    manifest.write_text(text[: len(text) // 2])
    load_fails(saved, CorruptFileError)
    manifest.write_text(text)
    (data_dir(saved) / "responses.bin").rename(saved / "elsewhere")
    load_fails(saved, CacheFileNotFoundError)
    manifest.unlink()
    message = load_fails(saved, CacheFileNotFoundError)
    assert "not a saved cache" in message
    with pytest.raises(FileNotFoundError):
        BinarySemanticCache.load(saved / "missing")


def test_files_swapped_between_two_saves_are_caught(tmp_path):
    for name, n in (("a", 5), ("b", 6)):
        cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=40)
        cache.put_batch(VECTORS[:n], [str(i) for i in range(n)])
        cache.save(tmp_path / name)
    a, b = data_dir(tmp_path / "a"), data_dir(tmp_path / "b")
    for name in ("entries.bin", "responses.bin"):
        mine, theirs = (a / name).read_bytes(), (b / name).read_bytes()
        (a / name).write_bytes(theirs)
        load_fails(tmp_path / "a", CorruptFileError)
        (a / name).write_bytes(mine)
    assert len(BinarySemanticCache.load(tmp_path / "a")) == 5


# ---------------------------------------------------------------- crash safety

CRASH_SAVER = """
import sys
import numpy as np
from binary_semantic_cache import BinaryEncoder, BinarySemanticCache
n = int(sys.argv[2])
x = np.random.default_rng(int(sys.argv[3])).standard_normal((n, 16))
cache = BinarySemanticCache(BinaryEncoder(16), max_entries=n)
cache.put_batch(x, [f"answer {i}" for i in range(n)])
print("ready", flush=True)
cache.save(sys.argv[1])
print("saved", flush=True)
"""


def build(n, seed):
    x = np.random.default_rng(seed).standard_normal((n, 16))
    cache = BinarySemanticCache(BinaryEncoder(16), max_entries=n)
    cache.put_batch(x, [f"answer {i}" for i in range(n)])
    return cache


def comparable(cache):
    idx = cache._index
    hw = idx.high_water
    arrays = tuple(getattr(idx, a)[..., :hw].tobytes() for a in ("codes", "gen", "tick", "prev"))
    return arrays, [cache._responses[s] for s in range(hw)]


def test_sigkill_during_save_leaves_old_or_new(tmp_path):
    path = tmp_path / "cache"
    old = build(500, seed=1)
    old.save(path)
    n = 60_000
    states = {"old": comparable(old), "new": comparable(build(n, seed=2))}
    script = tmp_path / "saver.py"
    script.write_text(textwrap.dedent(CRASH_SAVER))
    # How long one save takes here, to spread the kills across it.
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(script), str(tmp_path / "timing"), str(n), "2"],
                   check=True, capture_output=True, timeout=300)
    whole = time.perf_counter() - t0
    rng = random.Random(5)
    seen = set()
    for trial in range(20):
        proc = subprocess.Popen([sys.executable, str(script), str(path), str(n), "2"],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, whole / 3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
        loaded = BinarySemanticCache.load(path, mmap=trial % 2 == 0)
        got = comparable(loaded)
        match = [name for name, want in states.items() if got == want]
        assert match, f"trial {trial}: the directory holds neither the old nor the new save"
        seen.add(match[0])
        loaded.close()
        if match[0] == "new":  # start the next trial from the old state again
            old.save(path)
    assert "old" in seen


# ---------------------------------------------------------------- 1.0.1 imports and bsc


def write_v3(path, codes, created, last, counts, responses, as_dict=False):
    """A directory in binary-semantic-cache 1.0.1's layout, byte by byte."""
    import json
    import pickle
    import struct

    path.mkdir()
    (path / "header.json").write_text(json.dumps(
        {"version": 3, "num_entries": len(codes), "max_entries": 50, "code_bits": 256,
         "similarity_threshold": 0.85}))
    with open(path / "entries.bin", "wb") as f:
        for code, c, la, n in zip(codes, created, last, counts):
            f.write(struct.pack("<4QIII", *code, c, la, n))
    stored = dict(enumerate(responses)) if as_dict else list(responses)
    (path / "responses.pkl").write_bytes(pickle.dumps(stored))


@pytest.mark.parametrize("as_dict", [False, True])
def test_v3_import_keeps_every_response(tmp_path, as_dict):
    from binary_semantic_cache.migrate import import_v3

    enc = BinaryEncoder(DIM, 256)
    codes = enc.encode(VECTORS[:6]).tolist()
    responses = ["Paris", {"a": (1, 2)}, None, b"raw", 3.5, ["x"]]
    created = [1_700_000_000 + i for i in range(6)]
    last = [1_700_000_100 - 10 * i for i in range(6)]  # entry 0 used last
    write_v3(tmp_path / "v3", codes, created, last, [5, 0, 1, 2, 3, 4], responses, as_dict)
    with pytest.raises(UnsafeResponseError, match="trust_pickle=True"):
        import_v3(tmp_path / "v3", encoder=enc)
    cache = import_v3(tmp_path / "v3", encoder=enc, trust_pickle=True)
    assert len(cache) == 6 and cache.max_entries == 50 and cache.similarity_threshold == 0.85
    for i, v in enumerate(VECTORS[:6]):
        (hit,) = cache.search(v, k=1)
        assert hit.response == responses[i] and hit.similarity == 1.0
        assert (hit.created_at, hit.last_accessed, hit.access_count) == (
            created[i], last[i], [5, 0, 1, 2, 3, 4][i])
    order = check_invariants(cache._index)
    assert [cache._responses[s] for s in order] == responses  # most recent first
    with pytest.raises(EncoderMismatchError):
        import_v3(tmp_path / "v3", encoder=BinaryEncoder(DIM, 512), trust_pickle=True)
    (tmp_path / "v3" / "entries.bin").write_bytes(b"\x00" * 50)
    with pytest.raises(TruncatedFileError, match="expected 264 bytes"):
        import_v3(tmp_path / "v3", encoder=enc, trust_pickle=True)


def run_bsc(*args):
    return subprocess.run([sys.executable, "-m", "binary_semantic_cache.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_bsc_inspect_and_migrate(tmp_path, saved):
    done = run_bsc("inspect", saved)
    assert done.returncode == 0, done.stderr
    for text in ("format version   2", "embedding_dim=24 code_bits=256 seed=42",
                 f"entries          {len(VECTORS)} of capacity 40", "checksums        verified"):
        assert text in done.stdout
    (data_dir(saved) / "entries.bin").write_bytes(b"junk")
    done = run_bsc("inspect", saved)
    assert done.returncode == 2 and "truncated" in done.stderr

    enc = BinaryEncoder(DIM, 256)
    write_v3(tmp_path / "v3", enc.encode(VECTORS[:3]).tolist(), [1, 2, 3], [4, 5, 6],
             [0, 0, 0], ["a", "b", "c"])
    done = run_bsc("migrate", tmp_path / "v3", tmp_path / "new", "--dim", DIM)
    assert done.returncode == 2 and "trust-pickle" in done.stderr
    done = run_bsc("migrate", tmp_path / "v3", tmp_path / "new", "--dim", DIM, "--trust-pickle")
    assert done.returncode == 0, done.stderr
    migrated = BinarySemanticCache.load(tmp_path / "new")
    assert [migrated.get(v).response for v in VECTORS[:3]] == ["a", "b", "c"]


def test_broken_links_are_refused_even_without_verify(saved):
    import struct

    file = data_dir(saved) / "entries.bin"
    full = file.read_bytes()
    capacity = struct.unpack_from("<Q", full, 56)[0]
    n_words = struct.unpack_from("<I", full, 20)[0]
    prev_at = -(-(512 + 8 * n_words * capacity) // 64) * 64
    file.write_bytes(full[:prev_at] + struct.pack("<i", 10**6) + full[prev_at + 4:])
    rewrite_manifest(saved)
    message = load_fails(saved, CorruptFileError, verify=False)
    assert "prev" in message


def test_a_loaded_cache_runs_on_the_kernels_already_compiled(tmp_path):
    """Mapped arrays have the in-memory types: no kernel compiles again after a load."""
    from binary_semantic_cache import _kernels as K
    from binary_semantic_cache._core.jit import DISABLE_JIT

    if DISABLE_JIT:
        pytest.skip("kernels are plain Python")

    def use(cache):
        cache.get(VECTORS[0])
        cache.get_batch(VECTORS[:3])
        cache.search(VECTORS[1], k=3)
        cache.delete(cache.put(VECTORS[2], "x", ttl=5))
        len(cache)

    def compiled():  # the load-time check aside, which only a load runs
        return {name: len(kernel.signatures) for name in dir(K)
                if hasattr(kernel := getattr(K, name), "signatures") and name != "_check_slots"}

    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=40)
    cache.put_batch(VECTORS, list(range(len(VECTORS))))
    cache.put(VECTORS[0], "timed", ttl=100)
    use(cache)
    cache.save(tmp_path)
    before = compiled()
    for mmap in (True, False):
        use(BinarySemanticCache.load(tmp_path, mmap=mmap))
    assert compiled() == before


V1_SAVE = Path(__file__).parent / "data" / "format-v1"
V1_VECTORS = np.random.default_rng(3).standard_normal((10, 24))


@pytest.mark.parametrize("use_mmap", [True, False])
def test_a_version_1_save_still_loads_and_moves_on_to_version_2(tmp_path, use_mmap):
    # Written by the release before namespaces: 8 of 9 entries left, one with a ttl.
    path = tmp_path / "v1"
    shutil.copytree(V1_SAVE, path)
    before = digests(path)
    cache = BinarySemanticCache.load(path, mmap=use_mmap)
    assert cache.is_mapped is use_mmap
    assert len(cache) == 8 and cache.namespaces() == {None: 8}
    assert cache._index.check() == (0, -1)
    got = [cache.get(v) for v in V1_VECTORS[:9]]
    assert [g and g.response for g in got] == [
        *(f"answer {i}" for i in range(3)), None, *(f"answer {i}" for i in range(4, 8)),
        {"json": [1, 2]}]
    assert all(g is None or (g.namespace, g.key) == (None, None) for g in got)
    assert cache.stats().hits == 1 + 8
    cache.put(V1_VECTORS[9], "new", namespace="n", key="k")
    assert cache.get_exact("k", namespace="n").response == "new"
    cache.save(tmp_path / "v2")
    assert digests(path) == before  # loading never touches the old save
    assert persistence.inspect(tmp_path / "v2")["format_version"] == 2
    again = BinarySemanticCache.load(tmp_path / "v2", mmap=use_mmap)
    assert again.namespaces() == {None: 8, "n": 1}
    assert again.get_exact("k", namespace="n").response == "new"


def field_offset(path, name):
    """Byte offset of array ``name`` in a save's entries.bin, from its own header."""
    from binary_semantic_cache.persistence import format as F

    raw = (data_dir(path) / "entries.bin").read_bytes()
    layout, _ = F.unpack_header(raw[:F.HEADER_BYTES], "test").layout()
    return layout[name][0]


@pytest.mark.parametrize("name, fmt, value, words", [
    ("nlen", "<i", 10**6, "namespace segments"), ("members", "<i", 39, "namespace segments"),
    ("apos", "<i", 5, "namespace segments"), ("kslot", "<i", -5, "exact-key table"),
    ("kdisp", "<B", 200, "exact-key table")])
def test_damaged_namespace_and_key_sections_are_refused_even_without_verify(saved, name, fmt,
                                                                           value, words):
    import struct

    file = data_dir(saved) / "entries.bin"
    full = bytearray(file.read_bytes())
    at = field_offset(saved, name)
    if name in ("kslot", "kdisp"):  # the first bucket that holds a slot
        kslot = field_offset(saved, "kslot")
        first = next(i for i in range(64) if struct.unpack_from("<i", full, kslot + 4 * i)[0] >= 0)
        at += first * struct.calcsize(fmt)
    if name == "apos":
        at += 4 * 12  # the first keyed entry's slot: after the 12 in the default namespace
    struct.pack_into(fmt, full, at, value)
    file.write_bytes(bytes(full))
    rewrite_manifest(saved)
    message = load_fails(saved, CorruptFileError, verify=False)
    assert words in message


def test_a_key_record_that_is_not_text_or_bytes_is_named_as_damage(tmp_path):
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=8)
    cache.put(VECTORS[0], "r", key="zq")
    cache.save(tmp_path)
    file = data_dir(tmp_path) / "responses.bin"
    raw = file.read_bytes()
    assert raw.count(b"szq") == 1
    file.write_bytes(raw.replace(b"szq", b"j42"))  # a JSON number where the key was
    rewrite_manifest(tmp_path)
    loaded = BinarySemanticCache.load(tmp_path, verify=False)
    with pytest.raises(CorruptFileError, match="key of slot 0 is a int, not str or bytes"):
        loaded.get_exact("zq")
