"""The mirror's ordering rules, without Redis: own writes and the change log in any interleaving.

An instance applies its own write as soon as Redis commits it, while its sync
thread may deliver the change log earlier or later than that. Whatever the
interleaving, once both are done the mirror must hold what replaying the log
in order gives; and so after an outage, whose own writes wait in a backlog
until Redis returns.
"""

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from binary_semantic_cache import BinaryEncoder, BinarySemanticCache
from binary_semantic_cache.shared import records
from binary_semantic_cache.shared.mirror import EVERYTHING, Mirror

from .conftest import examples

ENCODER = BinaryEncoder(16, 64)
SPACES = [None, "x"]


def code(i):
    vector = np.random.default_rng(i).standard_normal(16).astype(np.float32)
    return ENCODER.encode(vector)


class Log:
    """What Redis does with writes: ids, replace-by-key, and the change log it keeps.

    Records are ``(sid, op, own, args, tag)``; ``tag`` is the caller's.
    """

    def __init__(self):
        self.state, self.blobs, self.keyed, self.records, self.next_gid = {}, {}, {}, [], 1

    def _append(self, op, own, args, tag):
        record = ((1_000 + len(self.records), 0), op, own, args, tag)
        self.records.append(record)
        return record

    def put(self, blob, own, tag=None):
        entry = records.unpack(blob, ENCODER.n_words)
        space, key = entry.namespace, entry.key
        gid = self.keyed.get((space, key)) if key is not None else None
        if gid is None:
            gid, self.next_gid = self.next_gid, self.next_gid + 1
        self.state[gid], self.blobs[gid] = (space, key, entry.response), blob
        if key is not None:
            self.keyed[space, key] = gid
        return self._append("put", own, (gid, blob), tag)

    def delete(self, gid, own, tag=None):
        if gid not in self.state:
            return None
        space, key, _ = self.state.pop(gid)
        self.keyed.pop((space, key), None)
        return self._append("del", own, (gid,), tag)

    def clear(self, namespace, own, tag=None):
        gone = [g for g, v in self.state.items() if namespace is EVERYTHING or v[0] == namespace]
        for gid in gone:
            space, key, _ = self.state.pop(gid)
            self.keyed.pop((space, key), None)
        return self._append("clear", own, (namespace,), tag)


def blob(op, i, space, n):
    return records.pack(code(i), space, f"k{i}" if op == "putkey" else None, False, None, f"r{n}")


def commit(program):
    """What Redis would log for ``program``, each record tagged with its index, and the
    state it leaves."""
    redis = Log()
    for n, (op, own, i, space) in enumerate(program):
        if op in ("put", "putkey"):
            redis.put(blob(op, i, space, n), own, n)
        elif op == "delete" and redis.state:
            redis.delete(sorted(redis.state)[i % len(redis.state)], own, n)
        elif op in ("clear", "clearall"):
            redis.clear(EVERYTHING if op == "clearall" else space, own, n)
    return redis.records, redis.state


def deliver(mirror, record):
    sid, op, _, args, _ = record
    if op == "put":
        mirror.apply_put(args[0], args[1], 0.0, None, sid)
    elif op == "del":
        mirror.apply_delete(args[0], sid)
    else:
        mirror.clear(args[0], after=sid)
    mirror.cursor = max(mirror.cursor, sid)


def apply_own(mirror, record):
    sid, op, _, args, _ = record
    if op == "put":
        mirror.apply_put(args[0], args[1], 0.0, None, sid, own=True)
    elif op == "del":
        mirror.apply_delete(args[0], sid, own=True)
    else:
        mirror.clear(args[0], after=sid, own=True)


# An operation: what it does, whether this instance made it, its entry or
# namespace, how many log records away from its own its local apply happens
# (negative: before the sync thread delivered the records before it), and
# whether the sync thread settles its batch after delivering it.
programs = st.lists(st.tuples(st.sampled_from(["put", "putkey", "delete", "clear", "clearall"]),
                              st.booleans(), st.integers(0, 4), st.sampled_from(SPACES),
                              st.integers(-3, 3), st.booleans()),
                    min_size=1, max_size=30)


@settings(max_examples=examples(2000))
@given(programs)
# A delete from elsewhere, delivered after this instance's later clear of another namespace.
@example([("put", True, 5, None, 0, True), ("delete", False, 0, None, 0, True),
          ("clear", True, 0, "x", -2, True)])
# This instance puts a key, applying it before the log brings that key's older entry
# (made and deleted elsewhere).
@example([("putkey", False, 0, "x", 0, False), ("put", False, 0, None, 0, False),
          ("delete", False, 0, None, 0, False), ("putkey", True, 0, "x", -3, False)])
def test_own_writes_and_the_log_in_any_order_end_where_the_log_does(program):
    log, expected = commit([p[:4] for p in program])
    settle = {n for n, record in enumerate(log) if program[record[4]][5]} | {len(log) - 1}
    # Own writes are applied in the order the one writer made them, each somewhere
    # around its own record of the log: earlier or later than the sync thread delivers it.
    pending, at = [], 0
    for n, record in enumerate(log):
        if record[2]:
            at = max(at, min(len(log), max(0, n + program[record[4]][4])))
            pending.append((at, record))
    mirror = Mirror(BinarySemanticCache(ENCODER, 64), ENCODER.n_words)
    for position in range(len(log) + 1):
        while pending and pending[0][0] == position:
            record = pending.pop(0)[1]
            apply_own(mirror, record)
            if record[1] == "put" and mirror.cursor < record[0]:  # read-your-writes
                gid = record[3][0]
                assert mirror.contents()[gid][2] == records.unpack(record[3][1], 1).response
        if position < len(log):
            deliver(mirror, log[position])
            if position in settle:
                mirror.advance(mirror.cursor)
    assert mirror.contents() == expected
    assert not mirror.ahead and not mirror.clears  # everything settled


writes = st.lists(st.tuples(st.sampled_from(["put", "putkey", "delete", "clear", "clearall"]),
                            st.booleans(), st.integers(0, 4), st.sampled_from(SPACES)),
                  max_size=15)


def write(redis, op, i, space, n):
    if op in ("put", "putkey"):
        return redis.put(blob(op, i, space, n), own=False)
    if op == "delete" and redis.state:
        return redis.delete(sorted(redis.state)[i % len(redis.state)], own=False)
    if op in ("clear", "clearall"):
        return redis.clear(EVERYTHING if op == "clearall" else space, own=False)
    return None


@settings(max_examples=examples(1000))
@given(writes, st.integers(0, 5), writes, st.booleans(), writes)
def test_an_outage_ends_where_the_log_does(before, behind, outage, reload, after):
    """Writes before Redis goes away (the last ``behind`` not yet delivered), writes here
    and elsewhere while it is away, the backlog published on its return (after a full
    reload when the log was trimmed), and writes elsewhere after."""
    redis, mirror, n = Log(), Mirror(BinarySemanticCache(ENCODER, 64), ENCODER.n_words), 0
    for op, own, i, space in before:
        record = write(redis, op, i, space, n := n + 1)
        if record is not None and own:
            apply_own(mirror, record)
    for record in redis.records[:max(0, len(redis.records) - behind)]:
        deliver(mirror, record)
    mirror.advance(mirror.cursor)

    backlog = []  # as SharedSemanticCache keeps it while offline
    for op, own, i, space in outage:
        n += 1
        if not own:
            write(redis, op, i, space, n)
        elif op in ("put", "putkey"):
            body = blob(op, i, space, n)
            backlog.append(("put", mirror.apply_offline(body, 0.0, None), body))
        elif op == "delete":
            here = sorted(mirror.contents())
            if here:
                gid = here[i % len(here)]
                if gid < 0:
                    backlog = [b for b in backlog if b[1] != gid]
                else:
                    backlog.append(("del", gid))
                mirror.remove(gid)
        else:
            namespace = EVERYTHING if op == "clearall" else space
            mirror.clear(namespace, after=None)
            backlog.append(("clear", namespace))

    if reload:
        rows = [(gid, redis.blobs[gid], 0.0, None) for gid in sorted(redis.state)]
        mirror.load(rows, redis.records[-1][0] if redis.records else (0, 0))
    for kind, target, *body in backlog:
        if kind == "put":
            record = redis.put(body[0], own=True)
            mirror.published(target, record[3][0], record[0])
        elif kind == "del":
            redis.delete(target, own=True)
        else:
            redis.clear(target, own=True)
    for op, _, i, space in after:
        write(redis, op, i, space, n := n + 1)
    for record in redis.records:
        if record[0] > mirror.cursor:
            deliver(mirror, record)
    mirror.advance(mirror.cursor)
    assert mirror.contents() == redis.state
    assert not mirror.ahead and not mirror.clears and not mirror.provisional
