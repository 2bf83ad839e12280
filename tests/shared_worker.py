"""A SharedSemanticCache in a process of its own, driven by JSON lines (tests only).

    python tests/shared_worker.py REDIS_URL NAME MAX_ENTRIES

Reads one ``{"op": ..., "args": [...]}`` per line on stdin and answers one
``{"ok": result}`` or ``{"err": "..."}`` per line on stdout.
"""

import json
import sys

import numpy as np

DIM = 16


def vec(i):
    return np.random.default_rng(i).standard_normal(DIM).astype(np.float32)


def main(url, name, max_entries):
    from binary_semantic_cache import BinaryEncoder
    from binary_semantic_cache.shared import SharedSemanticCache

    cache = SharedSemanticCache(url, name, BinaryEncoder(DIM, 64), max_entries=int(max_entries))
    say({"ok": "ready"})
    for line in sys.stdin:
        request = json.loads(line)
        op, args = request["op"], request["args"]
        try:
            if op == "stop":
                cache.close()
                say({"ok": None})
                return
            if op == "put":
                i, text, key, namespace = args
                result = cache.put(vec(i), text, key=key, namespace=namespace)
            elif op == "put_forever":  # until killed; answers first, so the caller can kill
                say({"ok": None})
                i = 0
                while True:
                    cache.put(vec(10_000 + i), f"forever {i}" * 50, key=f"f{i}")
                    i += 1
            elif op == "get":
                i, namespace = args
                hit = cache.get(vec(i), namespace=namespace)
                result = None if hit is None else [hit.id, hit.response]
            elif op == "sync":
                result = cache.sync(args[0])
            elif op == "delete":
                result = cache.delete(args[0])
            elif op == "clear":
                result = cache.clear() if args[0] == "ALL" else cache.clear(namespace=args[0])
            elif op == "contents":
                result = [[gid, *entry] for gid, entry in sorted(cache._contents().items())]
            elif op == "stats":
                s = cache.stats()
                result = {"size": s.size, "malformed": s.malformed, "backlog": s.backlog,
                          "reconnects": s.reconnects, "resets": s.resets}
            else:
                raise ValueError(f"unknown op {op}")
            say({"ok": result})
        except Exception as err:  # noqa: BLE001  (sent back to the test)
            say({"err": repr(err)})


def say(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(*sys.argv[1:4])
