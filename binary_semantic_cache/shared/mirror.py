"""The local mirror: a BinarySemanticCache kept in step with Redis's change log.

Ids: Redis gives every entry a shared id; the mirror maps it to the local
cache's own. An instance applies its own writes at once, before the change
log brings them back ("ahead"); a record of the log older than an own write
to the same entry, a put older than an own clear of its namespace, or an older
entry of a key this instance has put since, is then skipped, so the mirror
never goes back in time. Puts made while Redis is unreachable get provisional
(negative) ids until published.
"""

import dataclasses

import numpy as np

from .._core import validate as _validate
from . import records

EVERYTHING = object()  # clear()'s default: every namespace


class Mirror:
    def __init__(self, local, n_words):
        self.local, self.n_words = local, n_words
        self.g2l, self.l2g = {}, {}
        self.ahead = {}  # shared id -> (stream id, blob, stored, expires); blob None: deleted
        self.clears = []  # (stream id, namespace) of own clears the log has not brought yet
        self.provisional = {}  # provisional id -> (blob, stored, expires)
        self.cursor = (0, 0)  # the last change-log record applied
        self._next_provisional = -1

    # ------------------------------------------------------------ ids

    def shared(self, entry):
        """``entry`` (local) with its shared id, or None if it has none."""
        if entry is None:
            return None
        gid = self.l2g.get(entry.id)
        return None if gid is None else dataclasses.replace(entry, id=gid)

    def local_id(self, gid):
        lid = self.g2l.get(gid)
        return lid if lid is not None and lid in self.local else None

    def contents(self):
        """``{shared id: (namespace, key, response)}`` of every live entry."""
        local, out = self.local, {}
        names = list(local.namespaces())  # takes the local lock itself
        with local._lock:
            now = local._now()
            space_of = {}
            for name in names:
                x = local._space(name)
                if x < 0:
                    continue
                for slot in local._index.namespace_slots_of(x).tolist():
                    space_of[slot] = x
            for gid, lid in self.g2l.items():
                slot = local._live_slot(lid, now)
                if slot >= 0:
                    entry = local._entry(slot, 1.0, x=space_of.get(slot, 0))
                    out[gid] = (entry.namespace, entry.key, entry.response)
        return out

    # ------------------------------------------------------------ applying

    def apply_put(self, gid, blob, stored, expires, sid, own=False):
        if own:
            if sid <= self.cursor:  # the log brought it first, and maybe later changes too
                return
            self.ahead[gid] = (sid, blob, stored, expires)
        elif self._stale(gid, sid) or self._overtaken(gid, sid, blob):
            return
        self._store(gid, blob, expires)

    def apply_delete(self, gid, sid, own=False):
        if own:
            if sid <= self.cursor:
                return
            self.ahead[gid] = (sid, None, None, None)
        elif self._stale(gid, sid):
            return
        self.remove(gid)

    def _stale(self, gid, sid):
        """True for a log record older than an own write to the same entry.

        A delete needs no other check: ids are not reused, so removing the
        entry again is always right, whatever own clears came after it.
        """
        mine = self.ahead.get(gid)
        if mine is not None and mine[0] >= sid:
            if mine[0] == sid:
                del self.ahead[gid]
            return True
        return False

    def _overtaken(self, gid, sid, blob):
        """True for a put older than an own clear of its namespace, or whose key another
        entry holds here by a newer own write.

        In the log, a key passes to a new id only after its old entry was
        deleted; the mirror sees another holder only when this instance's own
        put (or an unpublished one) came first, and that one is the newer.
        """
        if not (self.clears or self.ahead or self.provisional):
            return False
        try:
            entry = records.unpack(blob, self.n_words)
        except records.MalformedRecord:
            return False  # _store reports it
        if any(csid > sid and (space is EVERYTHING or space == entry.namespace)
               for csid, space in self.clears):
            return True
        if entry.key is None:
            return False
        lid = self.local._keyed_id(*_validate.key(entry.key), entry.namespace)
        holder = None if lid is None else self.l2g.get(lid)
        if holder is None or holder == gid:
            return False
        mine = self.ahead.get(holder)
        return holder < 0 or (mine is not None and mine[0] > sid)

    def _store(self, gid, blob, expires):
        entry = records.unpack(blob, self.n_words)
        ttl = None
        if expires is not None:
            ttl = expires - self.local._now()
            if ttl <= 0:
                self.remove(gid)
                return None
        units = None if entry.vector is None else entry.vector[None, :]
        if self.local.rescore and units is None and not entry.key_only:
            raise records.MalformedRecord("an entry without the rescoring vector this "
                                          "instance's rescore setting needs")
        keyed = None if entry.key is None else [_validate.key(entry.key)]
        old = self.g2l.get(gid)
        if old is not None and entry.key is None:
            self.remove(gid)
            old = None
        lid = self.local._store(entry.code[None, :], [entry.response], ttl, units,
                                entry.namespace, keyed, key_only=entry.key_only)[0]
        previous = self.l2g.get(lid)
        if previous is not None and previous != gid:
            self.g2l.pop(previous, None)
        if old is not None and old != lid:
            self.l2g.pop(old, None)
        self.g2l[gid], self.l2g[lid] = lid, gid
        return lid

    def remove(self, gid):
        self.provisional.pop(gid, None)
        lid = self.g2l.pop(gid, None)
        if lid is None:
            return False
        self.l2g.pop(lid, None)
        return self.local.delete(lid)

    def clear(self, namespace, after, own=False):
        """Clear as a log record at stream id ``after`` says (None: offline, not in Redis yet)."""
        if own and after is not None and after <= self.cursor:
            return  # the log brought it first
        if namespace is EVERYTHING:
            self.local.clear()
        else:
            self.local.clear(namespace=namespace)
        self.g2l = {g: lid for g, lid in self.g2l.items() if lid in self.local}
        self.l2g = {lid: g for g, lid in self.g2l.items()}
        if own and after is not None:
            self.clears.append((after, namespace))
        if after is None:  # offline: everything here is older than this clear
            return
        # Own writes newer than the clear, and puts not yet published, stay.
        for gid, (sid, blob, _, expires) in list(self.ahead.items()):
            if blob is not None and sid > after and gid not in self.g2l:
                self._store(gid, blob, expires)
        for pid, (blob, _, expires) in self.provisional.items():
            if pid not in self.g2l:
                self._store(pid, blob, expires)

    def advance(self, sid):
        """The log has been applied up to ``sid``: own writes at or before it are settled."""
        self.cursor = max(self.cursor, sid)
        if self.ahead:
            self.ahead = {g: a for g, a in self.ahead.items() if a[0] > self.cursor}
        if self.clears:
            self.clears = [c for c in self.clears if c[0] > self.cursor]

    # ------------------------------------------------------------ offline and reload

    def apply_offline(self, blob, stored, expires):
        pid = self._next_provisional
        self._next_provisional -= 1
        self.provisional[pid] = (blob, stored, expires)
        self._store(pid, blob, expires)
        return pid

    def published(self, pid, gid, sid):
        """A provisional entry is in Redis now, as ``gid``."""
        kept = self.provisional.pop(pid, None)
        lid = self.g2l.pop(pid, None)
        if kept is None:
            return
        self.ahead[gid] = (sid, *kept)
        if lid is not None:
            other = self.g2l.get(gid)
            if other is not None and other != lid:  # Redis replaced another entry by key
                self.l2g.pop(other, None)
                self.local.delete(other)
            self.g2l[gid], self.l2g[lid] = lid, gid

    def load(self, rows, cursor):
        """Replace everything with ``rows`` of ``(gid, blob, stored, expires)``; skipped count.

        Rows without expiry are stored in batches, one per namespace and kind.
        """
        self.local.clear()
        self.g2l, self.l2g, self.ahead, self.clears = {}, {}, {}, []
        skipped, groups, timed = 0, {}, []
        for gid, blob, stored, expires in rows:
            try:
                if expires:
                    timed.append((gid, blob, float(expires)))
                    continue
                entry = records.unpack(blob, self.n_words)
            except (records.MalformedRecord, ValueError, TypeError):
                skipped += 1
                continue
            if self.local.rescore and entry.vector is None and not entry.key_only:
                skipped += 1
                continue
            kind = (entry.namespace, entry.key is not None, entry.key_only)
            groups.setdefault(kind, []).append((gid, entry))
        for (namespace, keyed, key_only), items in groups.items():
            for lo in range(0, len(items), 10_000):
                chunk = items[lo:lo + 10_000]
                codes = np.stack([e.code for _, e in chunk])
                units = None
                if self.local.rescore and not key_only:
                    units = np.stack([e.vector for _, e in chunk])
                keys = [_validate.key(e.key) for _, e in chunk] if keyed else None
                lids = self.local._store(codes, [e.response for _, e in chunk], None, units,
                                         namespace, keys, key_only=key_only)
                for (gid, _), lid in zip(chunk, lids):
                    self.g2l[gid], self.l2g[lid] = lid, gid
        for gid, blob, expires in timed:
            try:
                self._store(gid, blob, expires)
            except (records.MalformedRecord, ValueError, TypeError):
                skipped += 1
        for pid, (blob, _, expires) in self.provisional.items():
            self._store(pid, blob, expires)
        self.cursor = cursor
        return skipped
