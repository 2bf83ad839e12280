"""Saves that race, directories that are not ours, special files, absurd or hostile files."""

import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from binary_semantic_cache import (
    BinaryEncoder,
    BinarySemanticCache,
    CacheError,
    CacheIOError,
    CorruptFileError,
    ForeignDirectoryError,
    TruncatedFileError,
)
from binary_semantic_cache.persistence import files as _files

from .test_persistence import (
    comparable,
    data_dir,
    digests,
    patch_entries,
    rewrite_manifest,
)

DIM = 16
OURS = {"manifest.json", ".bsc-lock", ".bsc-journal"}


def build(seed, n=40):
    x = np.random.default_rng(seed).standard_normal((n, DIM))
    cache = BinarySemanticCache(BinaryEncoder(DIM), max_entries=64)
    cache.put_batch(x, [f"cache {seed} answer {i}" for i in range(n)])
    return cache


def names(path):
    return {p.name for p in Path(path).iterdir()}


def assert_clean(path):
    """Only the manifest, the data it names and our two fixed files."""
    assert names(path) == OURS | {data_dir(path).name}
    assert (Path(path) / ".bsc-journal").read_text().splitlines()[1:] == []


# ---------------------------------------------------------------- concurrent saves and loads


def test_threads_saving_to_one_path_leave_one_whole_save(tmp_path):
    path = tmp_path / "cache"
    caches = [build(seed) for seed in range(4)]
    shared = build(99)
    states = [comparable(c) for c in caches] + [comparable(shared)]
    stop, loads, failures = threading.Event(), [], []

    def saver(cache):
        for _ in range(8):
            cache.save(path)

    def loader():
        while not stop.is_set():
            try:
                loaded = BinarySemanticCache.load(path, mmap=len(loads) % 2 == 0)
            except CacheError as exc:
                if "not a saved cache" not in str(exc):  # before the first save lands
                    failures.append(repr(exc))
                continue
            loads.append(comparable(loaded) in states)

    # Two threads save one cache object; four more save caches of their own.
    threads = [threading.Thread(target=saver, args=(c,)) for c in caches + [shared, shared]]
    reader = threading.Thread(target=loader)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    reader.join(timeout=60)
    assert not any(t.is_alive() for t in threads + [reader])
    assert failures == []
    assert loads and all(loads), "a load during the saves saw neither of the saves"
    assert comparable(BinarySemanticCache.load(path)) in states
    assert_clean(path)


SAVER = """
import sys
import numpy as np
from binary_semantic_cache import BinaryEncoder, BinarySemanticCache
seed, rounds = int(sys.argv[2]), int(sys.argv[3])
x = np.random.default_rng(seed).standard_normal((40, 16))
cache = BinarySemanticCache(BinaryEncoder(16), max_entries=64)
cache.put_batch(x, [f"cache {seed} answer {i}" for i in range(40)])
for _ in range(rounds):
    cache.save(sys.argv[1])
"""


def test_processes_saving_to_one_path_while_loads_run(tmp_path):
    path = tmp_path / "cache"
    script = tmp_path / "saver.py"
    script.write_text(textwrap.dedent(SAVER))
    seeds = (11, 12, 13)
    states = [comparable(build(seed)) for seed in seeds]
    procs = [subprocess.Popen([sys.executable, str(script), str(path), str(seed), "15"],
                              stderr=subprocess.PIPE, text=True) for seed in seeds]
    try:
        seen = 0
        while any(p.poll() is None for p in procs):
            try:
                loaded = BinarySemanticCache.load(path, mmap=seen % 2 == 0)
            except CacheError as exc:
                assert "not a saved cache" in str(exc), exc
                continue
            assert comparable(loaded) in states
            seen += 1
        for p in procs:
            assert p.wait(timeout=300) == 0, p.stderr.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=60)
            p.stderr.close()
    assert comparable(BinarySemanticCache.load(path)) in states
    assert_clean(path)


def test_a_loaded_mapping_survives_later_saves_to_its_path(tmp_path):
    first = build(1)
    first.save(tmp_path)
    mapped = BinarySemanticCache.load(tmp_path)  # maps data the next saves remove
    build(2).save(tmp_path)
    build(3).save(tmp_path)
    assert comparable(mapped) == comparable(first)
    assert_clean(tmp_path)


# ---------------------------------------------------------------- directories that are not ours


@pytest.mark.parametrize("foreign", ["data-2024/", "data-export.json", ".data-notes/",
                                     "notes.txt", ".bsc-journal.bak"])
def test_save_refuses_a_directory_holding_other_files(tmp_path, foreign):
    target = tmp_path / foreign.rstrip("/")
    if foreign.endswith("/"):
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    else:
        target.write_text("mine")
    before = digests(tmp_path)
    with pytest.raises(ForeignDirectoryError, match=foreign.rstrip("/")) as info:
        build(1).save(tmp_path)
    assert str(tmp_path) in str(info.value) and "empty or new directory" in str(info.value)
    assert isinstance(info.value, FileExistsError)
    assert digests(tmp_path) == before and names(tmp_path) == {target.name}


def test_user_files_beside_a_save_are_never_deleted(tmp_path):
    build(1).save(tmp_path)
    (tmp_path / "data-2024").mkdir()
    (tmp_path / "data-2024" / "keep.txt").write_text("mine")
    (tmp_path / "data-export.json").write_text("{}")
    (tmp_path / ".data-notes").mkdir()
    for seed in (2, 3):
        build(seed).save(tmp_path)
    assert (tmp_path / "data-2024" / "keep.txt").read_text() == "mine"
    assert (tmp_path / "data-export.json").read_text() == "{}"
    assert (tmp_path / ".data-notes").is_dir()
    assert comparable(BinarySemanticCache.load(tmp_path)) == comparable(build(3))


@pytest.mark.parametrize("manifest", ['{"name": "my-web-app", "icons": []}', "not json",
                                      '{"format": "other", "data": "data-1-1"}'])
def test_save_refuses_to_replace_a_foreign_manifest(tmp_path, manifest):
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(ForeignDirectoryError, match="manifest.json"):
        build(1).save(tmp_path)
    assert (tmp_path / "manifest.json").read_text() == manifest
    assert names(tmp_path) == {"manifest.json"}


def test_a_manifest_naming_a_foreign_directory_never_deletes_it(tmp_path):
    build(1).save(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "photos").mkdir()
    manifest["data"] = "photos"  # hand-edited: not a name our saves make
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    build(2).save(tmp_path)
    assert (tmp_path / "photos").is_dir()


def test_leftovers_of_killed_saves_are_removed_by_the_next(tmp_path, monkeypatch):
    build(1).save(tmp_path)

    real = _files.write_synced

    def killed(file, parts):  # the process dies half way through the data
        if Path(file).name != "entries.bin":
            return real(file, parts)
        Path(file).write_bytes(b"partial")
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(_files, "write_synced", killed)
        m.setattr("binary_semantic_cache.persistence.savedir.SaveDirectory.tidy",
                  lambda *a, **k: None)
        with pytest.raises(KeyboardInterrupt):
            build(2).save(tmp_path)
    assert any(n.startswith(".data-") for n in names(tmp_path))
    build(3).save(tmp_path)
    assert_clean(tmp_path)


# ---------------------------------------------------------------- full disk


def test_a_failed_manifest_write_leaves_the_previous_save_alone(tmp_path, monkeypatch):
    build(1).save(tmp_path)
    before = digests(tmp_path)
    real = _files.write_synced

    def disk_full(file, parts):
        if Path(file).name.startswith(".manifest.json."):
            Path(file).write_bytes(b"{")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(file, parts)

    monkeypatch.setattr(_files, "write_synced", disk_full)
    with pytest.raises(CacheIOError, match="No space left") as info:
        build(2).save(tmp_path)
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert digests(tmp_path) == before  # no orphan data directory, no temporary manifest
    assert comparable(BinarySemanticCache.load(tmp_path)) == comparable(build(1))


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs, so saves meet a real ENOSPC (needs the right to mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def test_saves_on_a_filling_disk_keep_the_previous_save(tiny_disk):
    path = tiny_disk / "cache"
    old, new = build(1, n=8), build(2, n=60)
    old.save(path)
    states = {"old": comparable(old), "new": comparable(new)}
    page = os.statvfs(tiny_disk).f_frsize
    outcomes = set()
    for free_pages in range(0, 16):
        filler = tiny_disk / "filler"
        room = os.statvfs(tiny_disk).f_bavail * page
        filler.write_bytes(b"\0" * max(0, room - free_pages * page))
        try:
            new.save(path)
            outcomes.add("saved")
        except CacheIOError as exc:
            assert exc.errno == errno.ENOSPC, exc
            outcomes.add("full")
        finally:
            filler.unlink()
        loaded = comparable(BinarySemanticCache.load(path))
        assert loaded in states.values()
        leftovers = names(path) - OURS - {".bsc-journal.tmp", data_dir(path).name}
        assert leftovers == set(), f"{free_pages} pages free: left {leftovers}"
        old.save(path)
    assert outcomes == {"saved", "full"}


# ---------------------------------------------------------------- special and absurd files


@pytest.fixture
def saved(tmp_path):
    build(1).save(tmp_path)
    return tmp_path


def run_bsc(*args):
    return subprocess.run([sys.executable, "-m", "binary_semantic_cache.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["entries.bin", "responses.bin"])
def test_symlinks_to_devices_are_refused_not_read(saved, name):
    file = data_dir(saved) / name
    file.unlink()
    file.symlink_to("/dev/zero")
    for verify in (True, False):
        with pytest.raises(CorruptFileError, match="symbolic link"):
            BinarySemanticCache.load(saved, verify=verify)
    done = run_bsc("inspect", saved)
    assert done.returncode == 2 and "symbolic link" in done.stderr


def test_fifos_and_directories_are_refused_without_waiting(saved):
    file = data_dir(saved) / "entries.bin"
    file.unlink()
    os.mkfifo(file)  # opening it for reading would wait for a writer
    with pytest.raises(CorruptFileError, match="a FIFO, expected a regular file"):
        BinarySemanticCache.load(saved)
    file.unlink()
    file.mkdir()
    with pytest.raises(CorruptFileError, match="a directory, expected a regular file"):
        BinarySemanticCache.load(saved)


def test_a_symlinked_data_directory_is_refused(saved, tmp_path_factory):
    data = data_dir(saved)
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "copy"
    data.rename(elsewhere)
    data.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(CorruptFileError, match="symbolic link"):
        BinarySemanticCache.load(saved)


# Byte offsets of header fields (see _format._HEADER).
EMBEDDING_DIM, SEED, TTL, TICK = 24, 32, 80, 88 + 8 * 6


def test_an_absurd_encoder_in_a_header_is_refused_before_allocating(tmp_path):
    cache = BinarySemanticCache(BinaryEncoder(DIM, code_bits=4096), max_entries=1)
    cache.put(np.ones(DIM), "x")
    cache.save(tmp_path)
    assert sum(f.stat().st_size for f in data_dir(tmp_path).iterdir()) < 4096
    patch_entries(tmp_path, EMBEDDING_DIM, "<I", 2**20)
    with pytest.raises(CorruptFileError, match=r"embedding_dim=1,048,576 and 4,096 bits.*"
                                               r"17,179,869,184 bytes.*encoder="):
        BinarySemanticCache.load(tmp_path)


@pytest.mark.parametrize("offset, fmt, value, text", [
    (TTL, "<d", float("inf"), "ttl inf"),
    (SEED, "<Q", 2**63, "seed 9223372036854775808"),
    (TICK, "<q", -5, "recency tick -5"),
])
def test_header_values_no_cache_can_have_are_refused(saved, offset, fmt, value, text):
    patch_entries(saved, offset, fmt, value)
    with pytest.raises(CorruptFileError, match=text):
        BinarySemanticCache.load(saved)


def rewrite_json_manifest(path, edit):
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(edit(manifest))


@pytest.mark.parametrize("edit, text", [
    (lambda m: json.dumps(m).replace('"bytes": ', '"bytes": Infinity, "was": ', 1),
     "byte count"),
    (lambda m: "[" * 100_000 + "]" * 100_000, "RecursionError"),
    (lambda m: json.dumps({**m, "version": True}), "format version True"),
    (lambda m: json.dumps({**m, "data": "../../etc"}), "not a data-<token> name"),
    (lambda m: json.dumps({**m, "files": []}), "\"files\" as an object"),
])
def test_every_manifest_problem_is_a_cache_error(saved, edit, text):
    rewrite_json_manifest(saved, edit)
    with pytest.raises(CacheError, match=text):
        BinarySemanticCache.load(saved)


def test_a_directory_named_manifest_is_a_cache_error(tmp_path):
    (tmp_path / "manifest.json").mkdir()
    with pytest.raises(CorruptFileError, match="a directory"):
        BinarySemanticCache.load(tmp_path)
    (tmp_path / "manifest.json").rmdir()
    (tmp_path / "manifest.json").write_bytes(b" " * (2 << 20))
    with pytest.raises(CorruptFileError, match="more than any manifest"):
        BinarySemanticCache.load(tmp_path)


def test_an_unreadable_file_is_a_cache_error(saved):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    file = data_dir(saved) / "entries.bin"
    file.chmod(0)
    with pytest.raises(CacheIOError, match="cannot open"):
        BinarySemanticCache.load(saved)


def test_a_deeply_nested_response_fails_its_get_without_counting_a_hit(tmp_path):
    depth = 50_000
    cache = BinarySemanticCache(BinaryEncoder(DIM))
    x = np.random.default_rng(0).standard_normal((2, DIM))
    cache.put(x[0], "s" * (2 * depth))
    cache.put(x[1], "fine")
    cache.save(tmp_path)
    responses = data_dir(tmp_path) / "responses.bin"
    raw = responses.read_bytes()
    record = b"s" + b"s" * (2 * depth)
    assert raw.count(record) == 1
    responses.write_bytes(raw.replace(record, b"j" + b"[" * depth + b"]" * depth))
    rewrite_manifest(tmp_path)
    loaded = BinarySemanticCache.load(tmp_path)

    def bookkeeping():
        idx = loaded._index
        return loaded.stats(), idx.count.tobytes(), idx.tick.tobytes(), idx.prev.tobytes()

    before = bookkeeping()
    with pytest.raises(CorruptFileError, match="nested"):
        loaded.get(x[0])
    with pytest.raises(CorruptFileError, match="nested"):
        loaded.get_batch(x[::-1])  # the good row's hit is not counted either
    assert bookkeeping() == before
    assert loaded.get(x[1]).response == "fine"


def test_a_file_cut_after_the_manifest_check_is_named(saved):
    file = data_dir(saved) / "responses.bin"
    fd, size = _files.open_regular(file)
    try:
        os.truncate(file, size // 2)
        with pytest.raises(TruncatedFileError, match=f"expected {size:,} bytes"):
            _files.read_exactly(fd, size, file)
    finally:
        os.close(fd)


def test_bad_load_arguments_stay_argument_errors(saved):
    with pytest.raises(ValueError, match="parallel") as info:
        BinarySemanticCache.load(saved, parallel="yes")
    assert not isinstance(info.value, CacheError)
    with pytest.raises(TypeError, match="clock"):
        BinarySemanticCache.load(saved, clock=5)
    with pytest.raises(TypeError, match="encoder"):
        BinarySemanticCache.load(saved, encoder="enc")
