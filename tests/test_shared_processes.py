"""Three processes share one cache on a real redis-server: puts, deletes, clears, capacity,
a SIGKILL mid-put, Redis stopped and restarted, and a newcomer bootstrapping."""

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .redis_support import needs_redis, redis_server  # noqa: F401

pytestmark = needs_redis
pytest.importorskip("redis")
WORKER = Path(__file__).with_name("shared_worker.py")


class Instance:
    """One worker process; ``call`` waits (bounded) for its answer."""

    def __init__(self, url, name, max_entries=100):
        self.process = subprocess.Popen([sys.executable, str(WORKER), url, name,
                                         str(max_entries)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.answer(60) == "ready"

    def answer(self, timeout=30):
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise TimeoutError("the worker did not answer in time")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the worker exited with {self.process.wait(10)}")
        message = json.loads(line)
        if "err" in message:
            raise AssertionError(message["err"])
        return message["ok"]

    def call(self, op, *args, timeout=30):
        self.process.stdin.write(json.dumps({"op": op, "args": list(args)}) + "\n")
        self.process.stdin.flush()
        result = self.answer(timeout)
        if op == "contents":
            return {gid: tuple(rest) for gid, *rest in result}
        return tuple(result) if isinstance(result, list) else result

    def kill(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def stop(self):
        if self.process.poll() is None:
            try:
                self.call("stop")
            except (TimeoutError, OSError, AssertionError, ValueError):
                pass
        self.kill()


@pytest.fixture
def trio(redis_server):
    instances = [Instance(redis_server.url, "trio") for _ in range(3)]
    yield instances
    for instance in instances:
        instance.stop()


def synced(instances):
    assert all(i.call("sync", 20) for i in instances)
    contents = [i.call("contents") for i in instances]
    assert contents[0] == contents[1] == contents[2]
    return contents[0]


def test_puts_deletes_and_clears_reach_every_process(trio):
    a, b, c = trio
    gid = a.call("put", 1, "Paris", "capital", "geo")
    assert b.call("sync", 20) and c.call("sync", 20)
    assert b.call("get", 1, "geo") == (gid, "Paris") == c.call("get", 1, "geo")
    others = [b.call("put", i, f"r{i}", None, "geo" if i % 2 else None) for i in range(2, 8)]
    assert len(synced(trio)) == 7
    assert c.call("delete", others[0])
    assert others[0] not in synced(trio)
    a.call("clear", "geo")
    assert set(v[0] for v in synced(trio).values()) == {None}
    c.call("clear", "ALL")
    assert synced(trio) == {}


def test_the_capacity_holds_across_processes(redis_server):
    instances = [Instance(redis_server.url, "cap3", max_entries=30) for _ in range(3)]
    try:
        for n, instance in enumerate(instances):
            for i in range(20):
                instance.call("put", 100 * n + i, f"{n}-{i}", None, None)
        contents = synced(instances)
        assert len(contents) == 30
        assert redis_server.client().zcard("bsc:{cap3}:lru") == 30
        # The last 30 puts, in order, are what is left.
        assert sorted(v[2] for v in contents.values()) == sorted(
            [f"1-{i}" for i in range(10, 20)] + [f"2-{i}" for i in range(20)])
    finally:
        for instance in instances:
            instance.stop()


def test_a_process_killed_mid_put_leaves_whole_entries(trio, redis_server):
    a, b, c = trio
    c.call("put_forever")
    time.sleep(0.5)
    c.kill()
    contents = synced([a, b, a])
    assert contents and all(v[2].startswith("forever ") and v[2] == f"forever {v[1][1:]}" * 50
                            for v in contents.values())
    assert a.call("stats")["malformed"] == 0 == b.call("stats")["malformed"]
    r = redis_server.client()
    assert r.zcard("bsc:{trio}:lru") == len(contents) == len(r.keys("bsc:{trio}:e:*"))


def test_redis_stopped_and_restarted(trio, redis_server):
    a, b, c = trio
    a.call("put", 1, "before", None, None)
    synced(trio)
    redis_server.stop()
    assert a.call("get", 1, None)[1] == "before"  # lookups keep working
    pid = b.call("put", 2, "during", "k", None)
    assert pid < 0 and b.call("stats")["backlog"] == 1
    redis_server.start()
    deadline = time.monotonic() + 30
    while b.call("stats")["backlog"] and time.monotonic() < deadline:
        time.sleep(0.1)
    contents = synced(trio)
    assert sorted(v[2] for v in contents.values()) == ["before", "during"]
    assert all(gid > 0 for gid in contents)


def test_a_newcomer_bootstraps(trio, redis_server):
    a, b, _ = trio
    for i in range(50):
        (a if i % 2 else b).call("put", i, f"r{i}", f"k{i}", f"n{i % 4}")
    before = synced(trio)
    newcomer = Instance(redis_server.url, "trio")
    try:
        assert newcomer.call("contents") == before
    finally:
        newcomer.stop()
