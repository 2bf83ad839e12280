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
* ``ns``: ``int32[capacity]``, the entry's namespace id in the low 29 bits, plus
  ``KEYED`` when it has an exact key and ``KEY_ONLY`` when it has no code (a
  key-only entry, which no scan may return). Scans keep a slot whose
  ``ns & SCAN_MASK`` equals the namespace asked for.
* ``npos``: ``int32[capacity]``, the slot's position in its namespace's segment.
* ``members``: ``int32[arena]``, every namespace's scannable slots, each
  namespace a dense segment ``members[nstart[x] : nstart[x] + nlen[x]]`` with room
  for ``ncap[x]``. A full segment grows in place when it is the last one, else
  moves to the top (``state[MTOP]``); the space it leaves is reclaimed when the
  owner compacts the arena into a new array. ``nkey[x]`` counts the key-only
  entries, which have no place in a segment.
* ``khash``/``ktable``: the exact tier, zero-length until the first key. ``khash``
  holds 32 bits of each key's hash; ``ktable`` is an open-addressing table of
  slots (linear probing, -1 empty), always larger than the slot capacity.
* ``state``: ``int64[8]`` holding the scalars below, so kernels can update them.
"""

import numpy as np

HEAD, TAIL, FREE, HW, SIZE, HEAPN, TICK, MTOP = 0, 1, 2, 3, 4, 5, 6, 7
STATE_LEN = 8
TICK_MAX = np.uint32(0xFFFFFFFF)

NS_BITS = 29
ID_MASK = (1 << NS_BITS) - 1  # namespace ids run 0..ID_MASK; 0 is the default namespace
KEYED = 1 << NS_BITS
KEY_ONLY = 1 << (NS_BITS + 1)
SCAN_MASK = ID_MASK | KEY_ONLY
