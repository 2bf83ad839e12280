"""The layout every kernel shares: per-slot arrays and the ``state`` scalars.

Kernels take only arrays and scalars; ``_core.index.Index`` owns the arrays and
is the one caller. Layout:

* ``codes``: ``uint64[n_words, capacity]``, one column per slot. Column-wise
  storage lets LLVM vectorise the popcount across slots.
* ``prev``/``nxt``: ``int32[capacity]``, the doubly linked recency list of live
  slots (head = most recently used). A free slot is chained through ``nxt``.
* ``gen``: ``uint32[capacity]``, odd while the slot holds a live entry. It
  advances on every allocation and release, so an entry id (``gen << 32 | slot``)
  never names a later occupant of the same slot.
* ``tick``: ``uint32[capacity]``, the recency order as a number: higher is more
  recent. Breaks distance ties without walking the list.
* ``count``: ``uint32[capacity]`` hits served.
* ``created``: ``float64[capacity]`` epoch seconds of the put; ``seen``:
  ``float32[capacity]`` seconds from the put to the latest use. Relative to the
  put, the last-use time keeps sub-millisecond precision for a day-old entry
  while the whole record stays at 64 bytes for 256-bit codes.
* ``exp``/``heap``/``hpos``: expiry times and an indexed min-heap over the slots
  that have one. Zero-length until the first entry with a time to live.
* ``state``: ``int64[8]`` holding the scalars below, so kernels can update them.
"""

import numpy as np

HEAD, TAIL, FREE, HW, SIZE, HEAPN, TICK = 0, 1, 2, 3, 4, 5, 6
STATE_LEN = 8
TICK_MAX = np.uint32(0xFFFFFFFF)
