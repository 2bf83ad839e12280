"""How a lookup runs: scan without the lock, then record the hit under it.

``Lookups`` is a part of :class:`~binary_semantic_cache.BinarySemanticCache`, kept
apart so each file holds one concern; it uses the cache's ``_index``, ``_lock``,
``_version`` and counters.
"""

import numpy as np

from .. import _kernels as K
from ..results import CacheEntry
from .index import entry_id
from .jit import threads_for
from .spaces import key_home

# Lock-free scans retried before a lookup takes the lock for its scan.
_OPTIMISTIC_TRIES = 2
STALE = object()  # a lock-free scan read a segment a write was changing: scan again


class Lookups:
    """Finding entries: namespace and key resolution, scans, and recording hits."""

    def _space(self, name):
        """The index id of the (validated) namespace ``name``, -1 when it holds nothing.

        An id can be freed and given to another namespace while a lock-free
        scan runs, so ``_record`` checks it still names ``name``.
        """
        return 0 if name is None else self._spaces.find(name)

    def _home(self, record):
        """The home bucket of a key's tagged bytes (0 before the first key); lock held."""
        return key_home(record, self._salt, self._index.kslot.shape[0])

    def _keyed_slot(self, x, home, key):
        """The live slot of ``key`` in namespace ``x``, or -1; the lock is held."""
        idx, start = self._index, -1
        while True:
            s, bucket = idx.find_key(home, x, start)
            if s < 0:
                return s
            stored = self._keys[s]
            if stored == key and type(stored) is type(key):
                return s
            start = bucket + 1  # another key with the same home

    def _keyed_id(self, record, key, name):
        """The id of the entry of ``key`` (as ``_validate.key`` gives it) in namespace
        ``name``, or None; unlike ``get_exact`` it records nothing."""
        with self._lock:
            x = self._space(name)
            s = self._keyed_slot(x, self._home(record), key) if x >= 0 else -1
            return None if s < 0 else entry_id(self._index.gen.item(s), s)

    def _lookup(self, codes, units, threshold, x, name):
        now = self._purged_now()
        if x < 0:  # a namespace that never held an entry
            with self._lock:
                self._misses += codes.shape[0]
            return [None] * codes.shape[0]
        k = self._rescore_k if self._rescore else 1
        slots = np.empty((codes.shape[0], k), np.int64)
        dists = np.empty_like(slots)
        return self._optimistic(lambda: self._candidates(codes, slots, dists, x),
                                lambda _: self._record(slots, dists, units, threshold, now, x,
                                                       name))

    def _purged_now(self):
        """The clock's time, with entries expired by then released."""
        now = self._now()
        if self._index.expiry_due(now):
            with self._lock:
                self._purge(now)
        return now

    def _optimistic(self, scan, record):
        """``scan()`` without the lock, then ``record(found)`` under it.

        A write that could have changed what the scan saw (a slot reused, the
        arrays regrown) bumps ``_version``; the scan then runs again, and in
        the end under the lock. ``record`` also refuses a slot that is not a
        live one of the namespace asked for, which a scan overlapping a
        segment's move can read.
        """
        for _ in range(_OPTIMISTIC_TRIES):
            version = self._version
            found = scan()
            with self._lock:
                if self._version == version:
                    out = record(found)
                    if out is not STALE:
                        return out
        with self._lock:
            self._check_open()
            return record(scan())

    def _nearest(self, code, x):
        idx = self._index
        threads = threads_for(idx.high_water, self._parallel)
        if x == 0 and len(self._spaces.ids) == 1 and not idx.has_keys:
            # One namespace, no key-only entry: every live slot is a candidate.
            return idx.nearest_any(code, threads)
        return idx.nearest(code, threads, x)

    def _record_one(self, slot, dist, threshold, now, x, name):
        """``_record`` for one code, without rescoring; the lock is held."""
        if slot < 0 or (x and self._spaces.names[x] != name):
            self._misses += 1
            return None
        idx = self._index
        # A lock-free scan can read a segment mid-move: the slot must still be
        # a live, scannable entry of namespace x.
        if not idx.scannable(slot, x):
            return STALE
        similarity = self._similarity_list[dist]
        if similarity < threshold or (idx.has_expiry and idx.exp[slot] <= now):
            self._misses += 1
            return None
        return self._hit(slot, similarity, self._responses[slot], now, x)

    def _hit(self, slot, similarity, response, now, x):
        """Count a hit on ``slot`` whose response is already read; the lock is held."""
        self._index.touch(slot, now)
        self._hits += 1
        return self._entry(slot, similarity, response, x)

    def _candidates(self, codes, slots, dists, x):
        """The best ``slots.shape[1]`` slots for each code (-1 where there are fewer)."""
        idx = self._index
        if slots.shape[1] == 1:
            idx.top1(codes, threads_for(idx.high_water * codes.shape[0], self._parallel),
                     slots[:, 0], dists[:, 0], x)
            return
        threads = threads_for(idx.high_water, self._parallel)
        for i in range(codes.shape[0]):
            idx.topk(codes[i], threads, slots[i], dists[i], x)

    def _record(self, slots, dists, units, threshold, now, x, name):
        """Turn scan results into hits or misses; the lock is held.

        Every hit's response is read before any bookkeeping, so a response
        that fails to decode leaves recency and counters as they were.
        """
        idx = self._index
        if x and self._spaces.names[x] != name:  # the id now names another namespace
            self._misses += slots.shape[0]
            return [None] * slots.shape[0]
        if not all(idx.scannable(s, x) for s in slots[slots >= 0].tolist()):
            return STALE
        found = []
        for i in range(slots.shape[0]):
            s, similarity = self._best(slots[i], dists[i], None if units is None else units[i])
            expired = idx.has_expiry and s >= 0 and idx.exp[s] <= now
            if s < 0 or expired or similarity < threshold:
                found.append(None)
            else:
                found.append((s, similarity, self._responses[s]))
        out = []
        for hit in found:
            if hit is None:
                self._misses += 1
                out.append(None)
            else:
                out.append(self._hit(*hit, now, x))
        return out

    def _best(self, slots, dists, unit):
        """The winning slot among candidates and its similarity (estimated or exact)."""
        if not self._rescore:
            s = int(slots[0])
            return s, (self._similarity[dists[0]] if s >= 0 else -2.0)
        idx = self._index
        return idx.pick_best(slots, idx.cosines(slots, unit))

    def _entry(self, slot, similarity, response=None, x=0):
        """The entry in ``slot``, of namespace id ``x``, as a :class:`CacheEntry`."""
        idx = self._index
        slot = int(slot)
        created = idx.created.item(slot)
        return CacheEntry(
            id=entry_id(idx.gen.item(slot), slot),
            response=self._responses[slot] if response is None else response,
            similarity=float(similarity), created_at=created,
            last_accessed=created + idx.seen.item(slot), access_count=idx.count.item(slot),
            namespace=self._spaces.names[x] if x else None,
            key=self._keys[slot] if idx.apos.item(slot) & K.KEYED else None)
