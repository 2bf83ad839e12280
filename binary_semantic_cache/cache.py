"""The semantic cache: binary codes in, cached responses out."""

import os
import threading
import time
from contextlib import contextmanager

import numpy as np

from . import _kernels as K
from . import persistence
from ._core import validate as _validate
from ._core.index import INITIAL_CAPACITY, RESCORE, Index, entry_id, key_table_size, split_id
from ._core.jit import threads_for
from ._core.responses import Responses
from ._core.snapshot import Snapshot
from ._core.spaces import Namespaces, key_home, stored_key_record
from .encoder import BinaryEncoder
from .errors import CacheClosedError
from .results import CacheEntry, CacheStats

# Lock-free scans retried before a lookup takes the lock for its scan.
_OPTIMISTIC_TRIES = 2
_NO_EXPIRY = np.zeros(0)  # expiry times of rows put without a time to live
_DEFAULT_ROW = np.zeros(1, np.int32)  # namespace and flags of one unkeyed row in the default
_NO_HOME = np.zeros(1, np.int64)  # the key home of one unkeyed row (never read)
_STALE = object()  # a lock-free scan read a segment a write was changing: scan again
_EVERYTHING = object()  # clear()'s default: every namespace


class BinarySemanticCache:
    """An in-process cache of responses, looked up by embedding similarity.

    Parameters
    ----------
    encoder : BinaryEncoder
        Turns embeddings into codes; its ``embedding_dim`` is the length every
        embedding given to this cache must have.
    max_entries : int, default 1000
        Capacity; a put into a full cache evicts the least recently used entry.
    similarity_threshold : float, default 0.80
        Least estimated cosine, ``cos(pi * hamming / code_bits)``, for a hit.
    ttl : float or None, keyword-only
        Default time to live of an entry, in seconds; None keeps entries
        until they are evicted or deleted.
    clock : callable, keyword-only, default ``time.time``
        Returns the current time in epoch seconds; inject a fake one in tests.
    parallel : bool or None, keyword-only
        Scan with all Numba threads: None decides by size (from
        ``PARALLEL_MIN_CODES`` codes), True always, False never.
    rescore : None, "int8", "float16" or "float32", keyword-only
        Keep a copy of each embedding in this type and decide hits on the
        exact cosine of the ``rescore_k`` nearest codes (see docs/quality.md).
        Costs ``embedding_dim`` bytes per entry for int8 (+4 for its norm),
        twice that for float16, four times for float32.
    rescore_k : int, default 10, keyword-only
        Candidates taken from the Hamming scan for rescoring.

    Notes
    -----
    Namespaces: every lookup and put names one namespace (``namespace=``, a
    str, or None for the default one), and a lookup only ever sees entries
    of its own. Capacity, recency and expiry are shared: one LRU order over
    the whole cache. An entry may also carry an exact ``key=``, found by
    :meth:`get_exact` without an embedding; a put whose key is already in
    its namespace replaces that entry in place.

    Thread safety: lookups scan without the lock, with the GIL released, so
    several threads read at once; writers (put, delete, clear) and the hit
    bookkeeping take a short lock. A lookup that overlapped a write that
    reused a slot scans again.

    Lifecycle: ``close()`` (or leaving a ``with`` block) releases the arrays
    and a loaded file's mappings; every later call raises
    :class:`CacheClosedError`. A cache loaded with ``mmap=True`` scans the
    file's pages in place (``is_mapped``) until its first put, which copies
    the arrays into memory.

    Examples
    --------
    >>> import numpy as np
    >>> cache = BinarySemanticCache(BinaryEncoder(embedding_dim=3, code_bits=64))
    >>> entry_id = cache.put([1.0, 0.2, 0.0], "Paris")
    >>> cache.get([0.98, 0.21, 0.01]).response
    'Paris'
    >>> cache.get([-1.0, 0.0, 0.3]) is None
    True
    """

    def __init__(self, encoder, max_entries=1000, similarity_threshold=0.80, *, ttl=None,
                 clock=time.time, parallel=None, rescore=None, rescore_k=10):
        if not isinstance(encoder, BinaryEncoder):
            raise TypeError(f"expected encoder as a BinaryEncoder, got {type(encoder).__name__}; "
                            "build one with BinaryEncoder(embedding_dim=...)")
        if not callable(clock):
            raise TypeError(f"expected clock as a callable returning epoch seconds, got "
                            f"{type(clock).__name__}; pass e.g. time.time")
        if parallel not in (None, True, False):
            raise ValueError(f"expected parallel as None, True or False, got {parallel!r}")
        self._encoder = encoder
        self._max = _validate.positive_int(max_entries, "max_entries")
        self._threshold = _validate.threshold(similarity_threshold, "similarity_threshold")
        self._ttl = _validate.ttl(ttl)
        self._clock = clock
        self._parallel = parallel
        if rescore not in (None, *RESCORE):
            raise ValueError(f"expected rescore as None, 'int8', 'float16' or 'float32', got "
                             f"{rescore!r}")
        self._rescore = rescore
        self._rescore_k = _validate.positive_int(rescore_k, "rescore_k", high=10_000)
        # cos(pi * d / bits) for every possible distance d.
        self._similarity = np.cos(np.pi * np.arange(encoder.code_bits + 1) / encoder.code_bits)
        self._similarity_list = self._similarity.tolist()  # a list indexes faster, per hit
        self._lock = threading.Lock()
        self._row_flags, self._row_home = np.zeros(1, np.int32), np.zeros(1, np.int64)
        self._salt = os.urandom(16)  # of the key hashes; saved with the cache
        self._hits = self._misses = self._evictions = self._expirations = self._exact_hits = 0
        self._closed = False
        self._mappings = []  # a loaded file's mmaps, closed by close()
        self._reset()

    def _reset(self):
        capacity = min(self._max, INITIAL_CAPACITY)
        self._index = Index(self._encoder.n_words, capacity, self._rescore,
                            self._encoder.embedding_dim)
        self._responses = Responses(capacity)
        self._keys = Responses(capacity)
        self._spaces = Namespaces()
        # Bumped by every write a lock-free scan could have seen half done.
        self._version = getattr(self, "_version", 0) + 1

    # ------------------------------------------------------------ properties

    @property
    def encoder(self):
        """The encoder that makes this cache's codes."""
        return self._encoder

    @property
    def max_entries(self):
        """Capacity before least-recently-used eviction."""
        return self._max

    @property
    def similarity_threshold(self):
        """Default least similarity for a hit."""
        return self._threshold

    @similarity_threshold.setter
    def similarity_threshold(self, value):
        self._threshold = _validate.threshold(value, "similarity_threshold")

    @property
    def rescore(self):
        """Type of the stored embedding copies used for rescoring, or None."""
        return self._rescore

    @property
    def ttl(self):
        """Default time to live in seconds, or None."""
        return self._ttl

    @property
    def is_mapped(self):
        """True while the index is a loaded file's memory map (until the first put)."""
        self._check_open()
        return self._index.mapped

    @property
    def closed(self):
        """True after ``close()``."""
        return self._closed

    # ------------------------------------------------------------ lookups

    def get(self, embedding, *, threshold=None, namespace=None):
        """The most similar cached entry of ``namespace``, if similar enough.

        Parameters
        ----------
        embedding : array_like, shape ``(embedding_dim,)``
        threshold : float, optional
            Overrides ``similarity_threshold`` for this lookup.
        namespace : str or None, optional
            Where to look; None is the default namespace.

        Returns
        -------
        CacheEntry or None
            The nearest live entry (ties: the most recently used) when its
            similarity is at least the threshold; its recency and
            ``access_count`` are refreshed. None on a miss.
        """
        threshold = self._threshold_or_default(threshold)
        x = self._space(namespace)
        code, unit = self._prepare(embedding, ndim=1)
        if unit is not None or x < 0:
            return self._lookup(code[None, :], None if unit is None else unit[None, :],
                                threshold, x)[0]
        # The common case, kept lean: one scan, no candidate arrays.
        now = self._purged_now()
        return self._optimistic(lambda: self._nearest(code, x),
                                lambda found: self._record_one(*found, threshold, now, x))

    def get_batch(self, embeddings, *, threshold=None, namespace=None):
        """``get`` for each row of ``embeddings``, in one scan of the namespace.

        Returns
        -------
        list of CacheEntry or None
            One per row, in order; hits are recorded in row order.
        """
        threshold = self._threshold_or_default(threshold)
        x = self._space(namespace)
        codes, units = self._prepare(embeddings, ndim=2)
        return self._lookup(codes, units, threshold, x)

    def get_exact(self, key, *, namespace=None):
        """The live entry put with exactly ``key`` in ``namespace``, without an embedding.

        An O(1) lookup in a hash table. A hit counts in ``stats().hits`` and
        ``exact_hits``, refreshes recency and ``access_count`` like any hit,
        and has similarity 1.0; a miss counts in ``misses``.
        """
        record, key = _validate.key(key)
        x = self._space(namespace)
        with self._lock:
            self._check_open()
            now = self._now()
            self._purge(now)
            s = self._keyed_slot(x, self._home(record), key) if x >= 0 else -1
            if s < 0:
                self._misses += 1
                return None
            response = self._responses[s]  # read before any bookkeeping
            self._exact_hits += 1
            return self._hit(s, 1.0, response, now, x)

    def search(self, embedding, k=5, *, namespace=None):
        """The ``k`` nearest live entries of ``namespace``, best first, whatever their similarity.

        For exploration: recency, ``access_count`` and hit statistics are left
        as they are.
        """
        k = _validate.positive_int(k, "k")
        x = self._space(namespace)
        q, unit = self._prepare(embedding, ndim=1)
        with self._lock:
            self._purge(self._now())
            if x < 0:
                return []
            idx = self._index
            wanted = max(k, self._rescore_k) if self._rescore else k
            slots = np.empty(min(wanted, idx.size), np.int64)
            dists = np.empty_like(slots)
            found = idx.topk(q, threads_for(idx.high_water, self._parallel), slots, dists, x)
            slots, dists = slots[:found], dists[:found]
            if not self._rescore:
                return [self._entry(s, self._similarity[d], x=x) for s, d in zip(slots, dists)]
            cosines = idx.cosines(slots, unit)
            order = np.lexsort((-idx.tick[slots].astype(np.int64), -cosines))[:k]
            return [self._entry(slots[i], cosines[i], x=x) for i in order]

    def _space(self, namespace):
        """The index id of ``namespace``, -1 when it has never held an entry."""
        if namespace is None:
            return 0
        return self._spaces.find(_validate.namespace(namespace))

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

    def _lookup(self, codes, units, threshold, x):
        now = self._purged_now()
        if x < 0:  # a namespace that never held an entry
            with self._lock:
                self._misses += codes.shape[0]
            return [None] * codes.shape[0]
        k = self._rescore_k if self._rescore else 1
        slots = np.empty((codes.shape[0], k), np.int64)
        dists = np.empty_like(slots)
        return self._optimistic(lambda: self._candidates(codes, slots, dists, x),
                                lambda _: self._record(slots, dists, units, threshold, now, x))

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
                    if out is not _STALE:
                        return out
        with self._lock:
            self._check_open()
            return record(scan())

    def _nearest(self, code, x):
        idx = self._index
        return idx.nearest(code, threads_for(idx.high_water, self._parallel), x)

    def _record_one(self, slot, dist, threshold, now, x):
        """``_record`` for one code, without rescoring; the lock is held."""
        if slot < 0:
            self._misses += 1
            return None
        idx = self._index
        # A lock-free scan can read a segment mid-move: the slot must still be
        # a live, scannable entry of namespace x (Index.scannable, inlined).
        members, nstart, nlen = idx.seg[:3]
        at, lo = idx.apos.item(slot) & K.POS_MASK, nstart.item(x)
        if not (lo <= at < lo + nlen.item(x) and members.item(at) == slot
                and idx.gen.item(slot) & 1):
            return _STALE
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

    def _record(self, slots, dists, units, threshold, now, x):
        """Turn scan results into hits or misses; the lock is held.

        Every hit's response is read before any bookkeeping, so a response
        that fails to decode leaves recency and counters as they were.
        """
        idx = self._index
        if not all(idx.scannable(s, x) for s in slots[slots >= 0].tolist()):
            return _STALE
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

    # ------------------------------------------------------------ writes

    def put(self, embedding, response, *, ttl=None, namespace=None, key=None):
        """Cache ``response`` under ``embedding`` in ``namespace``; returns the entry's id.

        A full cache first reuses the slot of an expired entry, else evicts
        the least recently used one, whatever its namespace. ``ttl``
        (seconds) overrides the default.

        With ``key`` (str or bytes), :meth:`get_exact` finds the entry too.
        When ``key`` is already in ``namespace``, that entry is replaced in
        place: it keeps its id, takes the new embedding, response and ttl
        (its ``created_at`` becomes now), and counts as a use. ``embedding``
        may then be None: a key-only entry, which no scan returns.
        """
        name = _validate.namespace(namespace)
        record = None
        if key is not None:
            record, key = _validate.key(key)
        if embedding is None:
            if key is None:
                raise TypeError("expected an embedding (array_like of embedding_dim floats); "
                                "None is allowed only with key=, for a key-only entry")
            codes, units = np.zeros((1, self._encoder.n_words), np.uint64), None
        else:
            codes, units = self._prepare(embedding, ndim=1)
            units = None if units is None else units[None, :]
            codes = codes[None, :]
        if key is None:
            return self._store(codes, [response], ttl, units, name)[0]
        return self._store(codes, [response], ttl, units, name, [(record, key)],
                           key_only=embedding is None)[0]

    def put_batch(self, embeddings, responses, *, ttl=None, namespace=None, keys=None):
        """``put`` for each row of ``embeddings`` with the matching response (and key).

        Returns the ids in row order. When the batch is larger than the free
        room, its later rows evict the least recently used entries, which may
        be its own earlier rows. A key given twice in one batch leaves one
        entry, holding the later row.
        """
        name = _validate.namespace(namespace)
        codes, units = self._prepare(embeddings, ndim=2)
        _validate.batch_length(codes.shape[0], responses)
        keyed = _validate.keys(keys, codes.shape[0])
        return self._store(codes, list(responses), ttl, units, name, keyed)

    def _store(self, codes, responses, ttl, units, name, keyed=None, key_only=False):
        """Store rows in namespace ``name``, each keyed row replacing its key's entry if any."""
        ttl = self._ttl if ttl is None else _validate.ttl(ttl)
        m = codes.shape[0]
        with self._lock:
            self._check_open()
            now = self._now()
            self._purge(now)  # an expired entry is not replaced: its key is free again
            expires = self._expiry_times(m, ttl, now)
            x = 0 if name is None else self._namespace_id(name)
            if keyed is None:
                flags = _DEFAULT_ROW if x == 0 and m == 1 else np.full(m, x, np.int32)
                _, slots, ids = self._insert(codes, expires, flags, flags.astype(np.int64)
                                             if m > 1 else _NO_HOME, units, now)
            else:
                if not self._index.has_keys:
                    self._index.enable_keys(key_table_size(self._max))
                if key_only and self._rescore:
                    # Never scanned; a unit copy keeps the stored norms valid.
                    units = np.eye(1, self._encoder.embedding_dim, dtype=np.float32)
                flag = x | K.NEW_KEYED | (K.NEW_KEY_ONLY if key_only else 0)
                if m == 1:  # buffers kept for the common single put; the lock guards them
                    flags, self._row_flags[0] = self._row_flags, flag
                    homes, self._row_home[0] = self._row_home, self._home(keyed[0][0])
                else:
                    flags = np.full(m, flag, np.int32)
                    homes = np.array([self._home(r) for r, _ in keyed], np.int64)
                slots, ids = self._store_keyed(codes, expires, flags, homes, units, keyed, now)
            items = self._responses._items
            for slot, response in zip(slots.tolist(), responses):
                items[slot] = response
            return ids

    def _store_keyed(self, codes, expires, flags, homes, units, keyed, now):
        """Insert rows, settling each whose key's home already holds an entry of the
        namespace: it replaces that entry when the keys are equal, and is stored beside
        it when only the homes are. The lock is held."""
        m = codes.shape[0]
        row_keys = [k for _, k in keyed]
        slots, ids, start, check = np.empty(m, np.int64), [], 0, True
        while start < m:
            rows = slice(start, m) if start else slice(None)
            done, got, new_ids = self._insert(
                codes[rows], expires[rows] if expires.shape[0] else expires, flags[rows],
                homes[rows], None if units is None else units[rows], now, check,
                row_keys[start:])
            slots[start:start + done] = got[:done]
            ids += new_ids
            start += done
            if start == m:
                break
            signal, check = int(got[done]), True
            if signal == -2:  # a run of the key table grew too long: another salt
                self._rebuild_keys()
                homes = np.array([self._home(r) for r, _ in keyed], np.int64)
                continue
            key = row_keys[start]
            stored = self._keys[signal]
            if stored == key and type(stored) is type(key):
                row = slice(start, start + 1)
                self._replace(signal, codes[start], bool(flags[start] & K.NEW_KEY_ONLY),
                              expires[row] if expires.shape[0] else expires,
                              None if units is None else units[row], now)
                ids.append(entry_id(self._index.gen.item(signal), signal))
                slots[start] = signal
                start += 1
            else:
                check = False  # another key with the same home: store this row beside it
        return slots, ids

    def _insert(self, codes, expires, flags, homes, units, now, check_keys=False,
                row_keys=None):
        """Store rows until one needs settling: ``(rows stored, slots, ids)``; lock held.

        ``slots[rows stored]`` then says why (see ``Index.insert``). Keys of
        evicted entries leave the key table, and the new rows' keys are kept.
        """
        m = codes.shape[0]
        self._purge(now)
        self._reserve(m)
        idx = self._index
        # The buckets of keys evicted in one kernel call stay until settled
        # below: bound how many, so runs stay short.
        step = max(1, self._max // 16) if idx.has_keys else m
        slots, ids, done = None if m == 1 else np.empty(m, np.int64), [], 0
        while done < m:
            end = min(m, done + step)
            part = slice(done, end) if done or end < m else slice(None)
            fresh_before, arena = idx.high_water, idx.seg[0]
            n, got, new_ids, evicted, victims = idx.insert(
                codes[part], expires[part] if expires.shape[0] else expires, now, flags[part],
                homes[part], check_keys)
            self._evictions += evicted
            if idx.high_water - fresh_before < n or idx.seg[0] is not arena:
                # A slot a reader may be scanning was rewritten, or the arena compacted.
                self._version += 1
            if slots is None:  # one row: its arrays are the answer
                if units is not None and n:
                    idx.store_copies(got[:1], units)
                if idx.has_keys and n:
                    self._settle_keys(got[:1], victims, row_keys)
                return n, got, new_ids
            if units is not None:
                idx.store_copies(got[:n], units[part][:n])
            if idx.has_keys:
                self._settle_keys(got[:n], victims, None if row_keys is None
                                  else row_keys[done:done + n])
            slots[done:done + n] = got[:n]
            ids += new_ids
            if n < len(got):  # stopped at a row the caller settles
                slots[done + n] = got[n]
                return done + n, slots, ids
            done = end
        return done, slots, ids

    def _settle_keys(self, slots, victims, keys):
        """After an insert: drop evicted entries' keys from the table, keep the new rows'."""
        stored = self._keys
        gone, homes = [], []
        for r, s in enumerate(slots.tolist()):
            v = int(victims[r])
            if v >= 0:  # in row order: an earlier row of this batch may be the one evicted
                homes.append(self._home(stored_key_record(stored[v])))
                gone.append(v)
            stored[s] = None if keys is None else keys[r]
        if gone:
            self._index.remove_keys(homes, gone)

    def _drop_keys(self, slots):
        """Take the keys of ``slots`` out of the table and forget them; the lock is held."""
        keyed = [s for s in slots if self._keys[s] is not None]
        if keyed:
            self._index.remove_keys(
                [self._home(stored_key_record(self._keys[s])) for s in keyed], keyed)
            for s in keyed:
                self._keys[s] = None

    def _rebuild_keys(self):
        """Refill the key table under a new salt (a run grew too long); the lock is held."""
        idx = self._index
        live = [s for s in range(idx.high_water)
                if idx.gen[s] & 1 and idx.apos[s] & K.KEYED]
        for _ in range(16):
            self._salt = os.urandom(16)
            homes = [self._home(stored_key_record(self._keys[s])) for s in live]
            if idx.fill_keys(homes, live):
                return
        raise RuntimeError("the key table keeps overflowing under fresh salts; report this")

    def _expiry_times(self, m, ttl, now):
        """Expiry time of each of ``m`` rows (empty: none expires); the lock is held."""
        if ttl is None:
            return _NO_EXPIRY
        expires = np.full(m, _validate.expiry(now, ttl))  # raises before any change
        if not self._index.has_expiry:
            self._index.enable_expiry()
        return expires

    def _namespace_id(self, name):
        """The id of ``name``, allotted and given table room if new; the lock is held."""
        spaces = self._spaces
        x = spaces.find(name)
        if x >= 0:
            return x
        if spaces.due():
            spaces.sweep(self._index.counts())
        x = spaces.add(name)
        if x > K.ID_MASK:
            spaces.sweep(self._index.counts())
            raise ValueError(f"this cache holds {K.ID_MASK:,} namespaces, the most it can; "
                             "clear some with clear(namespace=...)")
        if x >= self._index.namespace_slots:
            self._index.reserve_namespace(x)
            self._version += 1
        return x

    def _replace(self, slot, code, key_only, expires, units, now):
        """Rewrite the keyed entry in ``slot`` in place; the lock is held."""
        self._purge(now)
        self._reserve(0)
        idx = self._index
        expiry = float(expires[0]) if expires.shape[0] else np.inf
        idx.replace(slot, code, key_only, expiry, now)
        if units is not None:
            idx.store_copies(np.array([slot]), units)
        self._version += 1

    def _reserve(self, m):
        """Grow the arrays so ``m`` more puts need no eviction, up to max_entries.

        A loaded file's mapped arrays are copied into memory here, whatever
        the room: a put never writes to the file's pages.
        """
        idx = self._index
        need = min(self._max, idx.high_water + m)
        if need <= idx.capacity and not idx.mapped:
            return
        capacity = min(self._max, max(need, 2 * idx.capacity))
        self._index = idx.grown(capacity)
        self._responses.grow(capacity)
        self._keys.grow(capacity)
        self._version += 1

    def delete(self, entry_id):
        """Remove an entry; returns False when the id names no live entry."""
        with self._lock:
            slot = self._live_slot(entry_id, self._now())
            if slot < 0:
                return False
            self._drop_keys([slot])
            self._index.release(slot)
            self._responses[slot] = None
            self._version += 1
            return True

    def clear(self, namespace=_EVERYTHING):
        """Remove every entry, or those of one ``namespace``; counters are kept."""
        if namespace is _EVERYTHING:
            with self._lock:
                self._check_open()
                self._reset()
            return
        x = self._space(namespace)
        with self._lock:
            self._check_open()
            if x < 0:
                return
            self._reserve(0)
            idx = self._index
            slots = idx.namespace_slots_of(x)
            self._drop_keys(slots.tolist())
            idx.release_all(slots)
            for s in slots.tolist():
                self._responses[s] = None
            self._version += 1

    def namespaces(self):
        """``{namespace: live entries}`` of every namespace holding any (None: the default)."""
        with self._lock:
            self._check_open()
            self._purge(self._now())
            return self._spaces.live(self._index.counts())

    def _purge(self, now):
        """Release expired entries; the lock is held."""
        if not self._index.expiry_due(now):
            return
        slots, keyed = self._index.purge(now)
        self._drop_keys([s for s, k in zip(slots, keyed) if k])
        for s in slots:
            self._responses[s] = None
        self._expirations += len(slots)
        self._version += 1

    # ------------------------------------------------------------ files

    def save(self, path, *, allow_pickle=False):
        """Save to the directory ``path`` atomically (see docs/file-format.md).

        Responses must be str, bytes or exact JSON values unless
        ``allow_pickle=True``, which must then be given to ``load`` too.
        ``path`` must be missing, empty, or a save of this library; saves to
        one path, from any thread or process, take turns. Readers go on during
        a save; writers wait only while the entries are copied out.

        Raises
        ------
        ForeignDirectoryError
            ``path`` holds files this library did not write (named in the message).
        CacheIOError
            The disk refused a write; the previous save at ``path`` is intact.
        UnsafeResponseError
            A response needs pickle and ``allow_pickle`` is False.
        """
        persistence.save(self, path, allow_pickle=allow_pickle)

    @classmethod
    def load(cls, path, *, mmap=True, encoder=None, verify=True, allow_pickle=False,
             clock=time.time, parallel=None):
        """A cache from a directory written by :meth:`save`.

        Parameters
        ----------
        mmap : bool, default True
            Map ``entries.bin`` privately and scan its codes in place: opening
            is quick whatever the size, and no change made afterwards reaches
            the file. False reads everything into memory.
        encoder : BinaryEncoder, optional
            Checked against the saved fingerprint (dimension, bits, seed and a
            hash of the hyperplanes); by default rebuilt from it.
        verify : bool, default True
            Check the SHA-256 of every file before using it. Sizes, header and
            slot links are checked either way; without the hash, other damage
            to a file can give wrong answers.
        allow_pickle : bool, default False
            Needed to read a save made with ``allow_pickle=True``.

        Raises
        ------
        CacheError
            Whatever the files hold, a load raises nothing else: one of
            CacheFileNotFoundError, TruncatedFileError, ChecksumError,
            CorruptFileError, FormatVersionError, ByteOrderError,
            EncoderMismatchError, UnsafeResponseError or CacheIOError.
        """
        return persistence.load(cls, path, mmap=mmap, encoder=encoder, verify=verify,
                                allow_pickle=allow_pickle, clock=clock, parallel=parallel)

    def close(self):
        """Release the arrays and any loaded file's mappings; later calls raise. Safe to repeat.

        A lookup still running in another thread keeps the pages it reads
        until it returns; the mapping is then released with it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # Empty arrays, not None: a lookup racing the close finds nothing, then raises.
            self._index = Index(self._encoder.n_words, 0)
            self._responses = self._keys = Responses(0)
            self._version += 1
            mappings, self._mappings = self._mappings, []
        for mapping in mappings:
            try:
                mapping.close()
            except BufferError:
                pass  # a reader still holds a view: released when it is done

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_open(self):
        if self._closed:
            raise CacheClosedError("this cache was closed; load or build a new one")

    @contextmanager
    def _snapshot(self):
        """Everything a save needs, unchanging while the context lasts (the lock is held)."""
        with self._lock:
            self._check_open()
            self._purge(self._now())
            yield Snapshot(self._encoder, self._max, self._threshold, self._ttl, self._rescore,
                           self._rescore_k, (self._hits, self._misses, self._evictions,
                                             self._expirations, self._exact_hits), self._index,
                           self._responses, self._keys, self._spaces.names, self._salt)

    @classmethod
    def _from_snapshot(cls, snapshot, *, clock=time.time, parallel=None, mappings=()):
        """A cache holding ``snapshot``'s entries; ``mappings`` are closed by its ``close()``."""
        cache = cls(snapshot.encoder, snapshot.max_entries, snapshot.threshold,
                    ttl=snapshot.ttl, clock=clock, parallel=parallel, rescore=snapshot.rescore,
                    rescore_k=snapshot.rescore_k)
        cache._index, cache._responses = snapshot.index, snapshot.responses
        cache._keys, cache._spaces = snapshot.keys, Namespaces(snapshot.names)
        cache._salt = snapshot.salt
        (cache._hits, cache._misses, cache._evictions, cache._expirations,
         cache._exact_hits) = snapshot.counters
        cache._mappings = list(mappings)
        return cache

    # ------------------------------------------------------------ mapping-like

    def _live_slot(self, value, now):
        self._check_open()
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            return -1
        value = int(value)
        if value < 0:
            return -1
        slot, gen = split_id(value)
        idx = self._index
        if slot >= idx.high_water or gen % 2 == 0 or idx.gen[slot] != gen:
            return -1
        if idx.has_expiry and idx.exp[slot] <= now:
            return -1
        return slot

    def __contains__(self, entry_id):
        return self._live_slot(entry_id, self._now()) >= 0

    def __len__(self):
        with self._lock:
            self._check_open()
            self._purge(self._now())
            return self._index.size

    def stats(self):
        """Counters and sizes now, as a :class:`CacheStats`."""
        with self._lock:
            self._check_open()
            self._purge(self._now())
            lookups = self._hits + self._misses
            return CacheStats(
                size=self._index.size, max_size=self._max, hits=self._hits, misses=self._misses,
                evictions=self._evictions, memory_bytes=self._index.nbytes,
                hit_rate=self._hits / lookups if lookups else 0.0, expirations=self._expirations,
                exact_hits=self._exact_hits)

    def __repr__(self):
        if self._closed:
            return f"BinarySemanticCache(closed, max_entries={self._max})"
        return (f"BinarySemanticCache(size={len(self)}, max_entries={self._max}, "
                f"code_bits={self._encoder.code_bits}, threshold={self._threshold}, "
                f"ttl={self._ttl}, rescore={self._rescore!r}"
                + (f", rescore_k={self._rescore_k}" if self._rescore else "")
                + (", mapped" if self._index.mapped else "") + ")")

    # ------------------------------------------------------------ helpers

    def _prepare(self, x, *, ndim):
        """Codes of ``x`` and, when rescoring, its rows scaled to unit length."""
        self._check_open()
        rows = _validate.embeddings(x, self._encoder.embedding_dim, ndim=ndim)
        codes = self._encoder._encode_checked(rows)
        return codes, (_validate.unit_rows(rows) if self._rescore else None)

    def _now(self):
        """The clock's time as a finite float, or the error that says what it returned."""
        now = self._clock()
        if type(now) is float and now - now == 0.0:  # finite: inf - inf and NaN are NaN
            return now
        return _validate.clock_value(now)

    def _threshold_or_default(self, threshold):
        return self._threshold if threshold is None else _validate.threshold(threshold)

    def threshold_distance(self, threshold=None):
        """Largest Hamming distance that still counts as a hit at ``threshold``."""
        threshold = self._threshold_or_default(threshold)
        # Similarity falls as distance grows and is 1.0 at distance 0.
        return int(np.flatnonzero(self._similarity >= threshold)[-1])

