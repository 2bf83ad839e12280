"""Numba options shared by every kernel, in one place.

==========================  =======  ==============================================
setting                     default  meaning
==========================  =======  ==============================================
``BSC_NUMBA_CACHE``         ``1``    ``0`` keeps compiled kernels out of the on-disk
                                     cache (``__pycache__``); every new process then
                                     compiles on first use.
``PARALLEL_MIN_CODES``      65,536   below this many codes (times queries) a scan runs
                                     on one thread. On the 2-core development machine
                                     two threads gain nothing at 10k codes and about
                                     1.3x at 100k and 1M (median, ``bsc bench``);
                                     waking the pool also costs p99 when the other
                                     core is busy, so the switch sits where the gain
                                     is clear.
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
