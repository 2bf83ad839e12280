"""SharedSemanticCache against a real redis-server: propagation, capacity, keys, faults."""

import threading
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binary_semantic_cache import BinaryEncoder, EncoderMismatchError, SharedStateError

from .conftest import FakeClock, examples
from .redis_support import needs_redis, redis_server  # noqa: F401

pytestmark = needs_redis
shared = pytest.importorskip("binary_semantic_cache.shared")
SharedSemanticCache = shared.SharedSemanticCache

DIM = 16
ENCODER = BinaryEncoder(DIM, 64)


def vec(i):
    return np.random.default_rng(i).standard_normal(DIM).astype(np.float32)


@pytest.fixture
def pair(redis_server):
    with SharedSemanticCache(redis_server.url, "t", ENCODER, max_entries=100) as a, \
            SharedSemanticCache(redis_server.url, "t", ENCODER, max_entries=100) as b:
        yield a, b


def test_a_put_is_read_at_once_here_and_after_sync_there(pair):
    a, b = pair
    gid = a.put(vec(1), "Paris", namespace="geo", key="capital of France")
    assert a.get(vec(1), namespace="geo").id == gid  # read-your-writes, no sync
    assert b.sync(10)
    hit = b.get(vec(1), namespace="geo")
    assert (hit.id, hit.response, hit.namespace) == (gid, "Paris", "geo")
    assert b.get_exact("capital of France", namespace="geo").id == gid
    assert b.get(vec(1)) is None and gid in b and len(b) == 1


def test_delete_clear_and_clear_namespace_propagate(pair):
    a, b = pair
    ids = [a.put(vec(i), f"r{i}", namespace="x" if i % 2 else None) for i in range(6)]
    assert b.sync(10) and len(b) == 6
    assert b.delete(ids[0]) and not b.delete(ids[0])
    assert a.sync(10) and ids[0] not in a and len(a) == 5
    a.clear(namespace="x")
    assert b.sync(10) and b.namespaces() == {None: 2} == a.namespaces()
    b.clear()
    assert a.sync(10) and len(a) == 0 and len(b) == 0


def test_capacity_is_global_and_eviction_is_least_recently_used(redis_server):
    with SharedSemanticCache(redis_server.url, "cap", ENCODER, max_entries=10) as a, \
            SharedSemanticCache(redis_server.url, "cap", ENCODER, max_entries=10) as b:
        first = [a.put(vec(i), i) for i in range(6)]
        assert b.sync(10)
        b.get(vec(0))  # the oldest is used on b: its hit reaches Redis within a second
        b._send_touches()
        [b.put(vec(100 + i), 100 + i) for i in range(6)]
        assert a.sync(10) and b.sync(10)
        assert len(a) == len(b) == 10
        assert redis_server.client().zcard("bsc:{cap}:lru") == 10
        assert first[0] in a and first[1] not in a and first[2] not in a
        assert a._contents() == b._contents()


def test_replace_by_key_keeps_the_id_everywhere_and_racing_keys_leave_one(pair):
    a, b = pair
    gid = a.put(vec(1), "old", key="k")
    assert b.put(vec(2), "new", key="k") == gid
    assert a.sync(10) and a.get_exact("k").response == "new" and len(a) == 1
    barrier = threading.Barrier(2)
    got = []

    def racer(cache, text):
        barrier.wait(5)
        got.append(cache.put(vec(3), text, key="race"))

    threads = [threading.Thread(target=racer, args=(c, t)) for c, t in ((a, "A"), (b, "B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(set(got)) == 1 and a.sync(10) and b.sync(10)
    assert a._contents() == b._contents() and len(a) == 2


def test_expiry_uses_one_clock(redis_server):
    clock = FakeClock(1_700_000_000.0)
    with SharedSemanticCache(redis_server.url, "ttl", ENCODER, clock=clock) as a, \
            SharedSemanticCache(redis_server.url, "ttl", ENCODER, clock=clock) as b:
        a.put(vec(1), "short", ttl=10)
        a.put(vec(2), "long")
        assert b.sync(10) and b.get(vec(1)).response == "short"
        clock.advance(11)
        assert b.get(vec(1)) is None and a.get(vec(1)) is None
        a.put(vec(3), "later")  # a write purges the expired entry in Redis
        assert b.sync(10) and redis_server.client().zcard("bsc:{ttl}:lru") == 2


def test_a_different_encoder_is_refused_naming_both(redis_server):
    with SharedSemanticCache(redis_server.url, "fp", ENCODER):
        with pytest.raises(EncoderMismatchError, match="dim=16 bits=64 seed=42.*dim=16 "
                                                       "bits=128 seed=42"):
            SharedSemanticCache(redis_server.url, "fp", BinaryEncoder(DIM, 128))


def test_an_unreachable_redis_at_start_is_named(redis_server):
    redis_server.stop()
    with pytest.raises(SharedStateError, match="could not be reached"):
        SharedSemanticCache(redis_server.url, "down", ENCODER)


def test_lookups_and_puts_survive_an_outage_and_instances_converge(redis_server):
    with SharedSemanticCache(redis_server.url, "out", ENCODER) as a, \
            SharedSemanticCache(redis_server.url, "out", ENCODER) as b:
        kept = a.put(vec(1), "before")
        assert b.sync(10)
        redis_server.stop()
        assert a.get(vec(1)).id == kept and b.get(vec(1)).id == kept
        offline = a.put(vec(2), "during", key="k2")
        assert offline < 0 and a.get(vec(2)).response == "during"
        assert a.stats().backlog == 1 and not b.sync(0.5)
        redis_server.start()
        assert _eventually(lambda: a.stats().backlog == 0 and a.stats().reconnects >= 1)
        assert b.sync(10) and a.sync(10)
        assert b.get_exact("k2").response == "during" and a.get_exact("k2").id > 0
        assert a._contents() == b._contents() and len(a) == 2


def test_a_redis_restarted_empty_resets_every_instance(redis_server):
    with SharedSemanticCache(redis_server.url, "gone", ENCODER) as a, \
            SharedSemanticCache(redis_server.url, "gone", ENCODER) as b:
        a.put(vec(1), "lost with Redis")
        assert b.sync(10) and len(b) == 1
        redis_server.restart(empty=True)
        assert _eventually(lambda: a.stats().resets >= 1 and b.stats().resets >= 1)
        assert len(a) == len(b) == 0
        a.put(vec(2), "after")
        assert b.sync(10) and b.get(vec(2)).response == "after"


def test_malformed_records_are_skipped_and_counted(pair, redis_server):
    a, b = pair
    r = redis_server.client()
    r.xadd("bsc:{t}:log", {"op": "put", "id": "77", "b": b"\x00garbage", "t": "1", "x": ""})
    r.xadd("bsc:{t}:log", {"op": "teleport"})
    r.xadd("bsc:{t}:log", {"nothing": "here"})
    gid = a.put(vec(1), "fine")
    assert b.sync(10) and b.get(vec(1)).id == gid
    assert b.stats().malformed == 3 and b._thread.is_alive()


def test_a_fresh_instance_bootstraps(pair, redis_server):
    a, _ = pair
    for i in range(300):
        a.put(vec(i), f"r{i}", key=f"k{i}", namespace=f"n{i % 3}")
    with SharedSemanticCache(redis_server.url, "t", ENCODER, max_entries=100) as c:
        assert len(c) == 100 and c._contents() == a._contents()


ops = st.lists(st.tuples(st.sampled_from(["put", "putkey", "delete", "clearns", "get"]),
                         st.integers(0, 1), st.integers(0, 5), st.sampled_from([None, "x"])),
               min_size=1, max_size=25)


@needs_redis
@settings(max_examples=examples(15), suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
@given(ops)
def test_interleaved_operations_on_two_instances_match_a_model(redis_server, program):
    name = f"model-{uuid.uuid4().hex}"  # a fresh shared cache for every run of an example
    with SharedSemanticCache(redis_server.url, name, ENCODER, max_entries=8) as a, \
            SharedSemanticCache(redis_server.url, name, ENCODER, max_entries=8) as b:
        caches, model, order, keyed = (a, b), {}, [], {}
        for op, who, i, ns in program:
            cache = caches[who]
            if op in ("put", "putkey"):
                key = f"k{i}" if op == "putkey" else None
                gid = cache.put(vec(i), f"{op}{i}", namespace=ns, key=key)
                if key is not None and (ns, key) in keyed:
                    assert gid == keyed[ns, key]
                model[gid] = (ns, key, f"{op}{i}")
                if key is not None:
                    keyed[ns, key] = gid
                order = [g for g in order if g != gid] + [gid]
                while len(model) > 8:
                    victim = order.pop(0)
                    gone = model.pop(victim)
                    keyed.pop((gone[0], gone[1]), None)
            elif op == "delete" and order:
                gid = order[i % len(order)]
                assert cache.delete(gid)
                gone = model.pop(gid)
                keyed.pop((gone[0], gone[1]), None)
                order.remove(gid)
            elif op == "clearns":
                cache.clear(namespace=ns)
                for gid in [g for g, v in model.items() if v[0] == ns]:
                    gone = model.pop(gid)
                    keyed.pop((gone[0], gone[1]), None)
                    order.remove(gid)
        assert a.sync(10) and b.sync(10)
        assert a._contents() == b._contents() == model


def _eventually(check, timeout=20.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_full_backlog_counts_what_it_cannot_keep(redis_server):
    with SharedSemanticCache(redis_server.url, "small", ENCODER, backlog=2) as a:
        redis_server.stop()
        ids = [a.put(vec(i), f"offline {i}") for i in range(3)]
        assert all(i < 0 for i in ids) and len(a) == 3
        stats = a.stats()
        assert (stats.backlog, stats.backlog_overflow) == (2, 1)
        redis_server.start()
        assert _eventually(lambda: a.stats().backlog == 0)
        assert redis_server.client().zcard("bsc:{small}:lru") == 2


def test_a_malformed_entry_in_redis_is_skipped_at_bootstrap(pair, redis_server):
    a, _ = pair
    a.put(vec(1), "whole")
    r = redis_server.client()
    r.hset("bsc:{t}:e:999", mapping={"b": b"\x01junk", "t": "1", "x": "", "f": "", "n": "d"})
    r.zadd("bsc:{t}:lru", {"999": 1.0})
    with SharedSemanticCache(redis_server.url, "t", ENCODER, max_entries=100) as c:
        assert len(c) == 1 and c.stats().malformed == 1 and c.get(vec(1)).response == "whole"


def test_it_serves_as_the_llm_layers_cache(redis_server):
    openai = pytest.importorskip("openai")
    from binary_semantic_cache.llm import CachedOpenAI, cache_info

    from .fake_servers import FakeOpenAI
    from .llm_support import Embedder, ask

    with FakeOpenAI() as server:
        clients, caches = [], []
        for _ in range(2):
            cache = SharedSemanticCache(redis_server.url, "llm", BinaryEncoder(64))
            caches.append(cache)
            clients.append(CachedOpenAI(openai.OpenAI(base_url=server.url, api_key="k",
                                                      max_retries=0), Embedder(), cache=cache))
        try:
            clients[0].chat.completions.create(**ask("What is the capital of France?"))
            assert caches[1].sync(10)
            near = clients[1].chat.completions.create(**ask("what is the capital of france"))
            assert cache_info(near).tier == "semantic" and server.chats == 1
        finally:
            for cache in caches:
                cache.close()


def test_a_clear_made_offline_clears_what_came_before_it(redis_server):
    with SharedSemanticCache(redis_server.url, "oc", ENCODER) as a, \
            SharedSemanticCache(redis_server.url, "oc", ENCODER) as b:
        a.put(vec(1), "old")
        redis_server.stop()
        a.put(vec(2), "offline, then cleared")
        a.clear()
        kept = a.put(vec(3), "after the clear")
        assert len(a) == 1 and a.get(vec(3)).id == kept
        redis_server.start()
        assert _eventually(lambda: a.stats().backlog == 0)
        assert a.sync(10) and b.sync(10)
        assert [v[2] for v in a._contents().values()] == ["after the clear"]
        assert a._contents() == b._contents()


def test_writes_after_close_are_refused(redis_server):
    from binary_semantic_cache import CacheClosedError

    cache = SharedSemanticCache(redis_server.url, "closed", ENCODER)
    cache.close()
    cache.close()
    for call in (lambda: cache.put(vec(1), "x"), lambda: cache.get(vec(1)),
                 lambda: cache.delete(1), cache.clear):
        with pytest.raises(CacheClosedError):
            call()


def test_stats_tell_how_far_behind_an_instance_is(pair):
    a, b = pair
    b._stop.set()  # hold b's sync thread, so the changes pile up
    b._thread.join(10)
    for i in range(3):
        a.put(vec(i), f"r{i}")
    stats = b.stats()
    assert stats.changes_behind == 3 and stats.sync_lag_seconds >= 0.0
    assert stats.max_size == 100 and a.stats().changes_behind == 0
