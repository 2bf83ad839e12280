"""How a write runs: slots, namespace segments and keys kept in step, under the lock.

``Writes`` is a part of :class:`~binary_semantic_cache.BinarySemanticCache`, kept
apart so each file holds one concern; it uses the cache's ``_index``, ``_lock``,
``_version``, ``_keys``, ``_responses`` and counters.
"""

import os

import numpy as np

from .. import _kernels as K
from . import validate as _validate
from .index import entry_id, key_table_size
from .spaces import stored_key_record

_NO_EXPIRY = np.zeros(0)  # expiry times of rows put without a time to live
_DEFAULT_ROW = np.zeros(1, np.int32)  # namespace and flags of one unkeyed row in the default
_NO_HOME = np.zeros(1, np.int64)  # the key home of one unkeyed row (never read)


class Writes:
    """Storing, replacing and releasing entries; every method runs with the lock held."""

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
            if start:
                rows = slice(start, m)
                done, got, new_ids = self._insert(
                    codes[rows], expires[rows] if expires.shape[0] else expires, flags[rows],
                    homes[rows], None if units is None else units[rows], now, check,
                    row_keys[start:])
            else:  # no views to make: the common single put
                done, got, new_ids = self._insert(codes, expires, flags, homes, units, now,
                                                  check, row_keys)
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
            # The kernel stops at the first entry whose key shares the home; the
            # key itself may sit further along the run.
            signal = self._keyed_slot(int(flags[start]) & K.ID_MASK, int(homes[start]), key)
            if signal >= 0:
                row = slice(start, start + 1)
                self._replace(signal, codes[start], bool(flags[start] & K.NEW_KEY_ONLY),
                              expires[row] if expires.shape[0] else expires,
                              None if units is None else units[row], now)
                ids.append(entry_id(self._index.gen.item(signal), signal))
                slots[start] = signal
                start += 1
            else:
                check = False  # only other keys share the home: store this row beside them
        return slots, ids

    def _insert(self, codes, expires, flags, homes, units, now, check_keys=False,
                row_keys=None):
        """Store rows until one needs settling: ``(rows stored, slots, ids)``; lock held.

        ``slots[rows stored]`` then says why (see ``Index.insert``). Keys of
        evicted entries leave the key table, and the new rows' keys are kept.
        """
        m = codes.shape[0]
        self._reserve(m)  # the caller purged expired entries at this same time
        idx = self._index
        # The buckets of keys evicted in one kernel call stay until settled
        # below: bound how many, so runs stay short.
        step = max(1, self._max // 16) if idx.has_keys else m
        slots, ids, done = None if m == 1 else np.empty(m, np.int64), [], 0
        state = idx.state
        while done < m:
            end = min(m, done + step)
            fresh_before, arena = state.item(K.HW), idx.seg[0]
            if done or end < m:
                part = slice(done, end)
                n, got, new_ids, evicted, victims = idx.insert(
                    codes[part], expires[part] if expires.shape[0] else expires, now,
                    flags[part], homes[part], check_keys)
            else:  # every row in one call: no views to make
                part = slice(None)
                n, got, new_ids, evicted, victims = idx.insert(codes, expires, now, flags,
                                                               homes, check_keys)
            self._evictions += evicted
            if state.item(K.HW) - fresh_before < n or idx.seg[0] is not arena:
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
        if spaces.due() or (not spaces.free and len(spaces.names) > K.ID_MASK):
            spaces.sweep(self._index.counts())
        if not spaces.free and len(spaces.names) > K.ID_MASK:
            raise ValueError(f"expected at most {K.ID_MASK + 1:,} namespaces with entries, and "
                             "this cache holds that many already; clear some with "
                             "clear(namespace=...)")
        x = spaces.add(name)
        if x >= self._index.namespace_slots:
            self._index.reserve_namespace(x)
            self._version += 1
        return x

    def _replace(self, slot, code, key_only, expires, units, now):
        """Rewrite the keyed entry in ``slot`` in place; the lock is held, and expired entries
        were purged at ``now``."""
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
