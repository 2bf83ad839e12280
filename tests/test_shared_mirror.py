"""The mirror's ordering rules, without Redis: own writes and the change log in any interleaving.

An instance applies its own write as soon as Redis commits it, while its sync
thread may deliver the change log earlier or later than that. Whatever the
interleaving, once both are done the mirror must hold what replaying the log
in order gives.
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


def commit(program):
    """What Redis would log for ``program``, and the state it leaves.

    Records are ``(sid, op, own, args, index in program)``.
    """
    state, keyed, log, next_gid = {}, {}, [], 1
    for n, (op, own, i, space) in enumerate(program):
        sid = (1_000 + n, 0)
        if op in ("put", "putkey"):
            key = f"k{i}" if op == "putkey" else None
            gid = keyed.get((space, key)) if key is not None else None
            if gid is None:
                gid, next_gid = next_gid, next_gid + 1
            response = f"r{n}"
            blob = records.pack(code(i), space, key, False, None, response)
            state[gid] = (space, key, response)
            if key is not None:
                keyed[space, key] = gid
            log.append((sid, "put", own, (gid, blob), n))
        elif op == "delete" and state:
            gid = sorted(state)[i % len(state)]
            space, key, _ = state.pop(gid)
            keyed.pop((space, key), None)
            log.append((sid, "del", own, (gid,), n))
        elif op in ("clear", "clearall"):
            namespace = EVERYTHING if op == "clearall" else space
            gone = [g for g, v in state.items() if namespace is EVERYTHING or v[0] == namespace]
            for gid in gone:
                space_, key, _ = state.pop(gid)
                keyed.pop((space_, key), None)
            log.append((sid, "clear", own, (namespace,), n))
    return log, state


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
