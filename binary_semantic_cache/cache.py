"""The semantic cache: binary codes in, cached responses out."""

import os
import threading
import time
from contextlib import contextmanager

import numpy as np

from . import persistence
from ._core import validate as _validate
from ._core.index import INITIAL_CAPACITY, RESCORE, Index, split_id
from ._core.jit import threads_for
from ._core.lookups import Lookups
from ._core.responses import Keys, Responses
from ._core.snapshot import Snapshot
from ._core.spaces import Namespaces
from ._core.writes import Writes
from .encoder import BinaryEncoder
from .errors import CacheClosedError
from .results import CacheStats

_EVERYTHING = object()  # clear()'s default: every namespace


class BinarySemanticCache(Lookups, Writes):
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
        self._keys = Keys(capacity)
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
        name = None if namespace is None else _validate.namespace(namespace)
        x = self._space(name)
        code, unit = self._prepare(embedding, ndim=1)
        if unit is not None or x < 0:
            return self._lookup(code[None, :], None if unit is None else unit[None, :],
                                threshold, x, name)[0]
        # The common case, kept lean: one scan, no candidate arrays.
        now = self._purged_now()
        return self._optimistic(lambda: self._nearest(code, x),
                                lambda found: self._record_one(*found, threshold, now, x, name))

    def get_batch(self, embeddings, *, threshold=None, namespace=None):
        """``get`` for each row of ``embeddings``, in one scan of the namespace.

        Returns
        -------
        list of CacheEntry or None
            One per row, in order; hits are recorded in row order.
        """
        threshold = self._threshold_or_default(threshold)
        name = _validate.namespace(namespace)
        x = self._space(name)
        codes, units = self._prepare(embeddings, ndim=2)
        return self._lookup(codes, units, threshold, x, name)

    def get_exact(self, key, *, namespace=None):
        """The live entry put with exactly ``key`` in ``namespace``, without an embedding.

        An O(1) lookup in a hash table. A hit counts in ``stats().hits`` and
        ``exact_hits``, refreshes recency and ``access_count`` like any hit,
        and has similarity 1.0; a miss counts in ``misses``.
        """
        record, key = _validate.key(key)
        name = _validate.namespace(namespace)
        with self._lock:
            self._check_open()
            now = self._now()
            self._purge(now)
            x = self._space(name)
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
        name = _validate.namespace(namespace)
        q, unit = self._prepare(embedding, ndim=1)
        with self._lock:
            self._purge(self._now())
            x = self._space(name)
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
        name = _validate.namespace(namespace)
        with self._lock:
            self._check_open()
            x = self._space(name)
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
            self._responses, self._keys = Responses(0), Keys(0)
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

