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
  while the whole record stays at 68 bytes for 256-bit codes.
* ``exp``/``heap``/``hpos``: expiry times and an indexed min-heap over the slots
  that have one. Zero-length until the first entry with a time to live.
* ``apos``: ``int32[capacity]``, where the slot sits in the namespace arena,
  plus ``KEYED`` when the entry has an exact key.
* ``members``: ``int32[arena]``, every namespace's entries, each namespace a
  segment ``members[nstart[x] : nstart[x] + nlen[x]]`` with room for ``ncap[x]``.
  A place holds the slot of a scannable entry, ``-(slot + 2)`` for a key-only
  entry (which no scan may return), or ``TOMBSTONE`` where an entry left. A
  slot belongs to namespace ``x`` when its ``apos`` lies in ``x``'s segment and
  the place there names it back. A full segment grows in place when it is the
  last one, else is copied, without its tombstones, to the top
  (``state[MTOP]``); the space it leaves is reclaimed when the owner compacts
  the arena into a new array.
* ``kslot``/``kdisp``: the exact tier, zero-length until the first key: an
  open-addressing table of slots (each with a tag of its key's hash in the
  bits above it; -1 empty) and each one's distance from its home bucket (at
  most ``MAX_DISPLACEMENT``), kept in Robin Hood order so those distances stay
  short at 8/9 full. No hash is kept per slot: the owner recomputes a key's
  hash from the key itself when its entry leaves, and compares keys itself on
  a lookup.
* ``state``: ``int64[8]`` holding the scalars below, so kernels can update them.
"""

import numpy as np

HEAD, TAIL, FREE, HW, SIZE, HEAPN, TICK, MTOP = 0, 1, 2, 3, 4, 5, 6, 7
STATE_LEN = 8
TICK_MAX = np.uint32(0xFFFFFFFF)

KEYED = 1 << 30  # in apos
# A new row's namespace id and flags, as the insert kernel takes them.
ID_MASK = (1 << 29) - 1
NEW_KEYED = 1 << 29
NEW_KEY_ONLY = 1 << 30
POS_MASK = KEYED - 1  # arena positions run 0..POS_MASK
TOMBSTONE = -1
MAX_DISPLACEMENT = 255
