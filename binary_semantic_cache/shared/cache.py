"""One cache shared by processes and machines: Redis holds it, each instance looks up locally."""

import collections
import dataclasses
import logging
import secrets
import threading
import time

import numpy as np

from .._core import validate as _validate
from .._optional import require
from ..cache import BinarySemanticCache
from ..encoder import BinaryEncoder
from ..errors import EncoderMismatchError, SharedStateError
from ..results import CacheStats
from . import records, scripts
from .mirror import EVERYTHING, Mirror

log = logging.getLogger("binary_semantic_cache.shared")

BATCH = 1_000  # entries per Lua call: Redis runs one script at a time
POLL_MS = 50  # how long one read of the change log waits for news
TOUCH_EVERY = 1.0  # seconds between batches of hits sent to Redis
EPOCH_EVERY = 1.0  # seconds between checks that Redis still holds this dataset


@dataclasses.dataclass(frozen=True, slots=True)
class SharedCacheStats(CacheStats):
    """:class:`CacheStats` of the local mirror, and how it keeps up with Redis.

    Attributes
    ----------
    sync_lag_seconds : float
        Age of the oldest change in Redis not yet applied here (0.0 when none).
    changes_behind : int
        Changes in Redis not yet applied here (counted up to 10,000).
    reconnects : int
        Times the connection to Redis came back after a failure.
    backlog : int
        Local changes made while Redis was unreachable, waiting to be published.
    backlog_overflow : int
        Puts made while the backlog was full: kept here, never published.
    malformed : int
        Records of the change log or entries skipped as unreadable.
    resets : int
        Times Redis was found emptied (restarted without its data) and this
        instance reloaded from it.
    """

    sync_lag_seconds: float = 0.0
    changes_behind: int = 0
    reconnects: int = 0
    backlog: int = 0
    backlog_overflow: int = 0
    malformed: int = 0
    resets: int = 0


class SharedSemanticCache:
    """A :class:`BinarySemanticCache` whose entries live in Redis, shared by every instance.

    Parameters
    ----------
    redis_url : str
        ``redis://host:port/db``; needs the ``[redis]`` extra.
    name : str
        The shared cache's name: instances with the same Redis and name share it.
    encoder : BinaryEncoder
        Must match the encoder of every other instance (checked at start).
    max_entries, similarity_threshold, ttl, rescore, rescore_k
        As for :class:`BinarySemanticCache`; ``max_entries`` bounds the total
        across all instances.
    clock : callable, optional, keyword-only
        Epoch seconds for every timestamp; None uses the Redis server's clock.
    backlog : int, default 10,000, keyword-only
        Changes kept for publishing while Redis is unreachable.
    log_length : int, default 100,000, keyword-only
        About how many changes the change log keeps; an instance further behind
        reloads everything.

    Notes
    -----
    Lookups are answered by a local mirror; a background thread applies
    Redis's change log to it in order. A put, delete or clear is one Lua
    script in Redis (entry, LRU, key index and log record together) before
    it returns, and is applied here at once. Hits reach Redis's LRU in
    batches, at least once a second. See docs/shared.md.
    """

    def __init__(self, redis_url, name, encoder, max_entries=1000, similarity_threshold=0.80, *,
                 ttl=None, rescore=None, rescore_k=10, clock=None, backlog=10_000,
                 log_length=100_000):
        redis = require("redis", "redis")
        if not isinstance(name, str) or not name or any(c in name for c in "{}\x00"):
            raise ValueError(f"expected name as a non-empty str without braces, got {name!r}")
        if not isinstance(encoder, BinaryEncoder):
            raise TypeError(f"expected encoder as a BinaryEncoder, got {type(encoder).__name__}")
        if clock is not None and not callable(clock):
            raise TypeError(f"expected clock as None or a callable returning epoch seconds, got "
                            f"{type(clock).__name__}")
        self._max = _validate.positive_int(max_entries, "max_entries")
        self._ttl = _validate.ttl(ttl)
        self._backlog_limit = _validate.positive_int(backlog, "backlog")
        self._log_length = _validate.positive_int(log_length, "log_length")
        self._name, self._encoder, self._clock = name, encoder, clock
        self._prefix = f"bsc:{{{name}}}:"
        self._offset = 0.0  # Redis time minus ours
        self._errors = (redis.ConnectionError, redis.TimeoutError)
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2.0,
                                           socket_connect_timeout=2.0)
        self._scripts = {n: self._redis.register_script(getattr(scripts, n))
                         for n in ("PUT", "DELETE", "CLEAR", "PURGE", "META", "FETCH")}
        # Headroom: while Redis is away, this instance's own puts land here first.
        local = BinarySemanticCache(encoder, self._max + self._backlog_limit + 1024,
                                    similarity_threshold, clock=self._now, rescore=rescore,
                                    rescore_k=rescore_k)
        self._mirror = Mirror(local, encoder.n_words)
        self._lock = threading.RLock()  # order of local applies; never held across Redis calls
        self._backlog = collections.deque()
        self._counts = collections.Counter()
        self._touched = {}
        self._online = True
        self._applied = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        try:
            self._clock_sync()
            self._epoch = self._check_meta()
            self._reload()
        except self._errors as err:
            raise SharedStateError(f"Redis at {redis_url} could not be reached: {err}; start "
                                   "redis-server, or check the URL") from None
        self._thread = threading.Thread(target=self._run, name=f"bsc-shared-{name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ properties

    @property
    def encoder(self):
        return self._encoder

    @property
    def max_entries(self):
        """Capacity of the shared cache, across all instances."""
        return self._max

    @property
    def similarity_threshold(self):
        return self._mirror.local.similarity_threshold

    @similarity_threshold.setter
    def similarity_threshold(self, value):
        self._mirror.local.similarity_threshold = value

    @property
    def ttl(self):
        return self._ttl

    def threshold_distance(self, threshold=None):
        """As :meth:`BinarySemanticCache.threshold_distance`."""
        return self._mirror.local.threshold_distance(threshold)

    @property
    def rescore(self):
        return self._mirror.local.rescore

    @property
    def closed(self):
        return self._mirror.local.closed

    @property
    def name(self):
        return self._name

    # ------------------------------------------------------------ lookups (local)

    def get(self, embedding, *, threshold=None, namespace=None):
        """As :meth:`BinarySemanticCache.get`, answered by the local mirror."""
        return self._seen(self._mirror.local.get(embedding, threshold=threshold,
                                                 namespace=namespace))

    def get_batch(self, embeddings, *, threshold=None, namespace=None):
        found = self._mirror.local.get_batch(embeddings, threshold=threshold, namespace=namespace)
        return [self._seen(e) for e in found]

    def get_exact(self, key, *, namespace=None):
        return self._seen(self._mirror.local.get_exact(key, namespace=namespace))

    def search(self, embedding, k=5, *, namespace=None):
        found = self._mirror.local.search(embedding, k, namespace=namespace)
        return [e for e in (self._mirror.shared(e) for e in found) if e is not None]

    def _seen(self, entry):
        if entry is None:
            return None
        shared = self._mirror.shared(entry)
        if shared is not None and shared.id > 0:
            self._touched[shared.id] = self._now()
        return shared

    def namespaces(self):
        return self._mirror.local.namespaces()

    def __len__(self):
        return len(self._mirror.local)

    def __contains__(self, entry_id):
        return self._mirror.local_id(entry_id) is not None

    # ------------------------------------------------------------ writes (Redis first)

    def put(self, embedding, response, *, ttl=None, namespace=None, key=None):
        """As :meth:`BinarySemanticCache.put`; committed to Redis before it returns.

        Returns the shared id. While Redis is unreachable the entry is kept
        here and published on reconnect; until then its id is provisional
        (negative).
        """
        row = self._row(embedding, response, namespace, key)
        return self._put_rows([row], ttl)[0]

    def put_batch(self, embeddings, responses, *, ttl=None, namespace=None, keys=None):
        local = self._mirror.local
        name = _validate.namespace(namespace)
        codes, units = local._prepare(embeddings, ndim=2)
        _validate.batch_length(codes.shape[0], responses)
        keyed = _validate.keys(keys, codes.shape[0])
        rows = []
        for i, response in enumerate(responses):
            key = None if keyed is None else keyed[i][1]
            vector = None if units is None else units[i]
            rows.append(self._packed(codes[i], vector, response, name, key, False))
        return self._put_rows(rows, ttl)

    def _row(self, embedding, response, namespace, key):
        name = _validate.namespace(namespace)
        if key is not None:
            key = _validate.key(key)[1]
        if embedding is None:
            if key is None:
                raise TypeError("expected an embedding; None is allowed only with key=, for a "
                                "key-only entry")
            return self._packed(np.zeros(self._encoder.n_words, np.uint64), None, response,
                                name, key, True)
        code, unit = self._mirror.local._prepare(embedding, ndim=1)
        return self._packed(code, unit, response, name, key, False)

    @staticmethod
    def _packed(code, vector, response, namespace, key, key_only):
        blob = records.pack(code, namespace, key, key_only, vector, response)
        return (records.key_field(namespace, key), records.namespace_field(namespace), blob)

    def _put_rows(self, rows, ttl):
        self._mirror.local._check_open()
        ttl = self._ttl if ttl is None else _validate.ttl(ttl)
        ttl_text = _ttl_arg(ttl)
        ids = []
        for lo in range(0, len(rows), BATCH):
            chunk = rows[lo:lo + BATCH]
            answer = self._call("PUT", str(self._max),
                                *(v for kf, ns, blob in chunk for v in (kf, ns, ttl_text, blob)))
            if answer is None:  # Redis is away: keep them here, publish later
                ids.extend(self._put_offline(row, ttl) for row in chunk)
                continue
            now = self._now()
            with self._lock:
                for (kf, ns, blob), gid, sid in zip(chunk, answer[::2], answer[1::2]):
                    gid = int(gid)
                    expires = None if ttl is None else now + ttl
                    self._mirror.apply_put(gid, blob, now, expires, records.stream_id(sid),
                                           own=True)
                    ids.append(gid)
        return ids

    def _put_offline(self, row, ttl):
        kf, ns, blob = row
        with self._lock:
            expires = None if ttl is None else self._now() + ttl
            pid = self._mirror.apply_offline(blob, self._now(), expires)
            if len(self._backlog) >= self._backlog_limit:
                self._counts["backlog_overflow"] += 1
            else:
                self._backlog.append(("put", pid, row, ttl))
            return pid

    def delete(self, entry_id):
        """Remove an entry everywhere; False when the id names no live entry."""
        self._mirror.local._check_open()
        if entry_id is None or isinstance(entry_id, bool) or not isinstance(entry_id, int):
            return False
        if entry_id < 0:  # provisional: not in Redis yet
            with self._lock:
                self._backlog = collections.deque(
                    op for op in self._backlog if not (op[0] == "put" and op[1] == entry_id))
                return self._mirror.remove(entry_id)
        answer = self._call("DELETE", str(entry_id))
        with self._lock:
            if answer is None:
                self._backlog.append(("del", entry_id))
                return self._mirror.remove(entry_id)
            known = self._mirror.local_id(entry_id) is not None
            if answer != 0:
                self._mirror.apply_delete(entry_id, records.stream_id(answer), own=True)
            return known or answer != 0

    def clear(self, namespace=EVERYTHING):
        """Remove every entry, or those of one ``namespace``, on every instance."""
        self._mirror.local._check_open()
        field = "" if namespace is EVERYTHING else records.namespace_field(
            _validate.namespace(namespace))
        answer = self._call("CLEAR", field)
        with self._lock:
            if answer is None:
                self._backlog.append(("clear", field))
                self._mirror.clear(namespace, after=None)
            else:
                self._mirror.clear(namespace, after=records.stream_id(answer), own=True)

    def _call(self, script, *args):
        """Run a script (None when Redis is unreachable; then this instance is offline)."""
        if not self._online:
            return None
        now = "" if self._clock is None else repr(float(self._clock()))
        try:
            return self._scripts[script](args=[self._prefix, str(self._log_length), now, *args])
        except self._errors as err:
            self._online = False
            log.warning("Redis unreachable (%r); working locally until it returns", err)
            return None

    # ------------------------------------------------------------ sync

    def sync(self, timeout=None):
        """Wait until every change committed to Redis before this call is applied here.

        Returns False on timeout, or when Redis cannot be reached.
        """
        try:
            target = self._last_id()
        except self._errors:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._applied:
            while self._mirror.cursor < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._applied.wait(left if left is not None else 1.0)
                if self._stop.is_set():
                    return False
        return True

    def _last_id(self):
        last = self._redis.xrevrange(self._prefix + "log", count=1)
        return records.stream_id(last[0][0]) if last else (0, 0)

    def _run(self):
        last_touch = last_epoch = last_clock = time.monotonic()
        pause = 0.1
        while not self._stop.is_set():
            try:
                if not self._online:
                    self._reconnect()
                now = time.monotonic()
                if now - last_epoch >= EPOCH_EVERY:
                    last_epoch = now
                    self._check_epoch()
                if now - last_clock >= 10.0:
                    last_clock = now
                    self._clock_sync()
                self._read_log()
                if time.monotonic() - last_touch >= TOUCH_EVERY:
                    last_touch = time.monotonic()
                    self._send_touches()
                pause = 0.1
            except self._errors as err:
                if self._online:
                    log.warning("Redis unreachable (%r); working locally until it returns", err)
                self._online = False
                self._stop.wait(pause)
                pause = min(pause * 2, 1.0)
            except Exception:  # noqa: BLE001  (the thread must outlive any one failure)
                log.exception("the shared cache's sync thread failed; it goes on")
                self._stop.wait(pause)

    def _read_log(self):
        cursor = "%d-%d" % self._mirror.cursor
        answer = self._redis.xread({self._prefix + "log": cursor}, count=1000, block=POLL_MS)
        for _, items in answer or ():
            with self._lock:
                for sid, fields in items:
                    sid = records.stream_id(sid)
                    self._apply(sid, fields)
                    self._mirror.cursor = max(self._mirror.cursor, sid)
                self._mirror.advance(self._mirror.cursor)
            with self._applied:
                self._applied.notify_all()

    def _apply(self, sid, fields):
        try:
            op = fields[b"op"]
            if op == b"put":
                expires = fields.get(b"x") or b""
                self._mirror.apply_put(int(fields[b"id"]), fields[b"b"], float(fields[b"t"]),
                                       float(expires) if expires else None, sid)
            elif op == b"del":
                self._mirror.apply_delete(int(fields[b"id"]), sid)
            elif op == b"clear":
                field = fields[b"ns"].decode()
                namespace = EVERYTHING if field == "" else (
                    None if field == "d" else field[2:])
                self._mirror.clear(namespace, after=sid)
            else:
                raise records.MalformedRecord(f"unknown operation {op!r}")
        except (KeyError, ValueError, TypeError, UnicodeDecodeError) as err:
            self._counts["malformed"] += 1
            log.error("skipped a malformed change-log record %d-%d: %r", *sid, err)

    def _send_touches(self):
        if not self._touched or not self._online:
            return
        touched, self._touched = self._touched, {}
        lru = self._prefix + "lru"
        pipe = self._redis.pipeline(transaction=False)
        for gid, when in touched.items():
            pipe.zadd(lru, {str(gid): when}, xx=True, gt=True)
        pipe.execute()

    def _reconnect(self):
        self._redis.ping()
        self._online = True
        self._counts["reconnects"] += 1
        self._check_epoch()
        trimmed = self._trimmed_past(self._mirror.cursor)
        if trimmed:
            log.warning("the change log no longer reaches back to this instance's position; "
                        "reloading everything")
            self._reload()
        self._publish_backlog()
        log.info("Redis is back; %d entries here", len(self))

    def _trimmed_past(self, cursor):
        try:
            info = self._redis.xinfo_stream(self._prefix + "log")
        except Exception as err:  # noqa: BLE001  (no log yet: nothing was trimmed)
            if isinstance(err, self._errors):
                raise
            return False
        deleted = info.get("max-deleted-entry-id")
        return deleted is not None and records.stream_id(deleted) > cursor

    def _publish_backlog(self):
        while self._backlog and self._online:
            with self._lock:
                op = self._backlog.popleft()
            if op[0] == "put":
                _, pid, row, ttl = op
                answer = self._call("PUT", str(self._max), row[0], row[1], _ttl_arg(ttl),
                                    row[2])
                if answer is None:
                    with self._lock:
                        self._backlog.appendleft(op)
                    return
                with self._lock:
                    self._mirror.published(pid, int(answer[0]), records.stream_id(answer[1]))
            else:
                answer = self._call("DELETE" if op[0] == "del" else "CLEAR", str(op[1]))
                if answer is None:
                    with self._lock:
                        self._backlog.appendleft(op)
                    return

    def _check_meta(self):
        fingerprint = "dim={} bits={} seed={}".format(*self._encoder.fingerprint[:3])
        stored, epoch = self._scripts["META"](keys=[self._prefix + "meta"],
                                              args=[fingerprint, secrets.token_hex(8)])
        if stored.decode() != fingerprint:
            raise EncoderMismatchError(
                f"shared cache {self._name!r} in Redis was made with an encoder of "
                f"{stored.decode()}, and this instance has {fingerprint}; build the encoder "
                "with the same embedding_dim, code_bits and seed, or use another name")
        return epoch

    def _check_epoch(self):
        epoch = self._check_meta()
        if epoch != self._epoch:
            log.warning("Redis no longer holds shared cache %r (restarted without its data?); "
                        "reloading from it, then publishing this instance's backlog",
                        self._name)
            self._epoch = epoch
            self._counts["resets"] += 1
            self._reload()

    def _reload(self):
        """Everything from Redis, replacing the mirror; provisional entries stay."""
        cursor = self._last_id()
        ids = self._redis.zrange(self._prefix + "lru", 0, -1)  # one snapshot of every id
        rows = []
        for lo in range(0, len(ids), 5_000):
            flat = self._scripts["FETCH"](args=[self._prefix, *ids[lo:lo + 5_000]])
            rows.extend(zip(flat[::4], flat[1::4], flat[2::4], flat[3::4]))
        with self._lock:
            skipped = self._mirror.load([(int(gid), blob, t, x) for gid, blob, t, x in rows if blob],
                                        cursor)
            self._counts["malformed"] += skipped
        with self._applied:
            self._applied.notify_all()

    def _clock_sync(self):
        if self._clock is not None:
            return
        t0 = time.time()
        seconds, micros = self._redis.time()
        t1 = time.time()
        self._offset = seconds + micros / 1e6 - (t0 + t1) / 2

    def _now(self):
        return self._clock() if self._clock is not None else time.time() + self._offset

    # ------------------------------------------------------------ the rest

    def stats(self):
        base = self._mirror.local.stats()
        behind, lag = 0, 0.0
        if self._online:
            try:
                if self._last_id() > self._mirror.cursor:  # only then read what is pending
                    pending = self._redis.xrange(self._prefix + "log",
                                                 "(%d-%d" % self._mirror.cursor, count=10_000)
                    behind = len(pending)
                    if pending:
                        lag = max(0.0, self._now()
                                  - records.stream_id(pending[0][0])[0] / 1000)
            except self._errors:
                pass
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(CacheStats)}
        fields["max_size"] = self._max
        return SharedCacheStats(**fields, sync_lag_seconds=lag, changes_behind=behind,
                                reconnects=self._counts["reconnects"], backlog=len(self._backlog),
                                backlog_overflow=self._counts["backlog_overflow"],
                                malformed=self._counts["malformed"],
                                resets=self._counts["resets"])

    def close(self):
        """Stop the sync thread (sending the last hits) and release the mirror; safe twice."""
        if self._mirror.local.closed:
            return
        self._stop.set()
        self._thread.join(10)
        try:
            self._send_touches()
        except self._errors:
            pass
        self._redis.close()
        self._mirror.local.close()
        with self._applied:
            self._applied.notify_all()

    def _contents(self):
        """``{shared id: (namespace, key, response)}`` of the mirror, for tests and checks."""
        with self._lock:
            return self._mirror.contents()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else ("online" if self._online else "offline")
        return (f"SharedSemanticCache({self._name!r}, {len(self) if not self.closed else 0}"
                f"/{self._max} entries, {state})")


def _ttl_arg(ttl):
    """A time to live as the PUT script takes it: seconds, or "" for none."""
    return "" if ttl is None else repr(float(ttl))
