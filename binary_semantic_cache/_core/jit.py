"""Numba options shared by every kernel, in one place.

==========================  =======  ==============================================
setting                     default  meaning
==========================  =======  ==============================================
``BSC_NUMBA_CACHE``         ``1``    ``0`` keeps compiled kernels out of the on-disk
                                     cache (``__pycache__``); every new process then
                                     compiles on first use.
``PARALLEL_MIN_CODES``      65,536   below this many codes (times queries) a scan runs
                                     on one thread. On the 2-core development machine
                                     two threads barely beat one at 10k codes and
                                     clearly do from 100k (the serial and parallel
                                     rows of docs/benchmarks.md); waking the pool
                                     also costs p99 when the other core is busy, so
                                     the switch sits where the gain is clear.
``BLOCK``                   1,024    codes per block in the scan kernels; the block's
                                     distances stay in L1 while the minimum is found.
==========================  =======  ==============================================

``NUMBA_DISABLE_JIT=1`` (Numba's own switch) runs every kernel as plain Python,
which is how the test suite measures coverage of kernel bodies.
"""

import os

import numba

DISABLE_JIT = bool(numba.config.DISABLE_JIT)
CACHE = os.environ.get("BSC_NUMBA_CACHE", "1") != "0"

# No fastmath: the kernels do integer work, and the few float comparisons
# (timestamps) must be exact.
JIT = {"nogil": True, "cache": CACHE, "boundscheck": False}
JIT_PARALLEL = dict(JIT, parallel=True)

PARALLEL_MIN_CODES = 65_536
BLOCK = 1024


class _Pool:
    """Whether this process may start Numba's thread pool.

    GNU OpenMP's pool does not survive ``fork``: a child forked after the
    parent ran a parallel kernel is killed when it runs one itself. Such a
    child scans on one thread instead (gunicorn ``--preload``, multiprocessing).
    """

    used = False  # a parallel kernel ran in this process
    usable = True


def _after_fork_in_child():
    if _Pool.used:
        _Pool.usable = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def threads_for(work, parallel):
    """Numba threads for a scan of ``work`` codes (times queries): the rule for every scan.

    ``parallel`` is the cache's setting: None decides by size, True and
    False force it. One thread in a child forked after a parallel scan.
    """
    if parallel is False or not _Pool.usable or (parallel is None and work < PARALLEL_MIN_CODES):
        return 1
    _Pool.used = True
    return numba.get_num_threads()
