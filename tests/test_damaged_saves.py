"""Damaged saves loaded without checksums: refused, or wrong at worst; never a crash or hang."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache, CorruptFileError
from binary_semantic_cache import _kernels as K
from binary_semantic_cache._core.jit import DISABLE_JIT

from .test_persistence import data_dir, patch_entries

FUZZ = Path(__file__).with_name("fuzz_saves.py")
# Header offset of the kernel state (see _format._HEADER), and its fields.
STATE = 88


@pytest.fixture
def saved(tmp_path):
    cache = BinarySemanticCache(BinaryEncoder(16), max_entries=16)
    x = np.random.default_rng(0).standard_normal((10, 16))
    ids = cache.put_batch(x, [str(i) for i in range(10)])
    cache.delete(ids[3])
    cache.save(tmp_path)
    return tmp_path, cache


def read_state(path):
    raw = (data_dir(path) / "entries.bin").read_bytes()
    return list(struct.unpack_from("<8q", raw, STATE))


def test_a_free_list_head_naming_a_live_slot_is_refused(saved):
    path, _ = saved
    state = read_state(path)
    # Later puts would take that live slot and write past the arrays.
    patch_entries(path, STATE + 8 * K.FREE, "<q", state[K.HEAD])
    with pytest.raises(CorruptFileError, match="free list"):
        BinarySemanticCache.load(path, verify=False)


def test_a_cycle_in_the_recency_links_is_refused(saved):
    path, cache = saved
    idx = cache._index
    tail, head = int(idx.state[K.TAIL]), int(idx.state[K.HEAD])
    n_words, capacity = idx.codes.shape
    nxt_at = 512 + -(-8 * n_words * capacity // 64) * 64 + -(-4 * capacity // 64) * 64
    assert struct.unpack_from("<i", (data_dir(path) / "entries.bin").read_bytes(),
                              nxt_at + 4 * tail) == (-1,)
    patch_entries(path, nxt_at + 4 * tail, "<i", head)  # in range: only a walk can tell
    with pytest.raises(CorruptFileError, match="recency list"):
        BinarySemanticCache.load(path, verify=False)


@pytest.mark.skipif(DISABLE_JIT, reason="the compiled kernels are what a damaged file could crash")
@pytest.mark.parametrize("cases, env", [
    (1200, {"NUMBA_BOUNDSCHECK": "1", "BSC_NUMBA_CACHE": "0"}),  # any stray index raises
    (1000, {}),  # the kernels as shipped
], ids=["boundscheck", "shipped"])
def test_single_field_corruptions_never_crash_or_hang(tmp_path, cases, env):
    done = subprocess.run([sys.executable, str(FUZZ), str(tmp_path), str(cases), str(cases)],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, **env})
    assert done.returncode == 0, (
        f"exit {done.returncode} (negative: killed by signal)\n{done.stdout[-3000:]}\n"
        f"{done.stderr[-3000:]}")
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcomes["load refused"] + outcomes["used"] == cases
    # Both paths are exercised: damage the load catches, and damage it lets through.
    assert outcomes["load refused"] > cases // 10 and outcomes["used"] > cases // 10
