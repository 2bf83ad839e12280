"""The proxy assembled: the cache and its home, the Starlette app, metrics, and ``serve``."""

import asyncio
import contextlib
import dataclasses
import logging
import time
from pathlib import Path

from .._optional import require
from ..cache import BinarySemanticCache
from ..encoder import BinaryEncoder
from ..llm.engine import Engine
from ..llm.metrics import PrometheusCollector
from ..llm.policy import CachePolicy
from .embedders import make_embedder
from .options import ServeOptions
from .tenancy import load_secret

log = logging.getLogger("binary_semantic_cache.server")

ROUTES = ("/v1/chat/completions", "/v1/models", "/v1/embeddings", "/healthz", "/metrics",
          "/bsc/stats", "/bsc/flush")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                   10, 30, 60, 120, 600)


def _modules():
    for module in ("starlette", "uvicorn", "httpx", "prometheus_client"):
        require(module, "server")


class Home:
    """Where the cache is saved: ``DIR/cache``, beside the tenants' secret ``DIR/tenant.secret``."""

    def __init__(self, cache_dir):
        self.dir = Path(cache_dir)
        self.path = self.dir / "cache"
        self._saved = None

    def load(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        if (self.path / "manifest.json").exists():
            return BinarySemanticCache.load(self.path, mmap=True)
        return None

    def save(self, cache, mark):
        """Save ``cache`` unless ``mark`` (what has changed) is the last save's; True if saved."""
        if mark == self._saved:
            return False
        cache.save(self.path)
        self._saved = mark
        return True


class Metrics:
    """The proxy's Prometheus registry: the LLM layer's ``bsc_`` figures and HTTP figures."""

    def __init__(self, stats, cache):
        pc = require("prometheus_client", "server")
        self.registry = pc.CollectorRegistry()
        self.registry.register(PrometheusCollector(stats, cache))
        self._requests = pc.Counter("bsc_http_requests", "HTTP requests by route, method and "
                                    "status", ["route", "method", "status"],
                                    registry=self.registry)
        self._latency = pc.Histogram("bsc_http_request_seconds", "Seconds to the start of the "
                                     "response, by route", ["route"], buckets=LATENCY_BUCKETS,
                                     registry=self.registry)
        self._outcomes = pc.Counter("bsc_chat_requests", "Chat completions by X-BSC-Cache",
                                    ["outcome"], registry=self.registry)
        self._hits = pc.Histogram("bsc_hit_seconds", "Seconds the proxy took to answer a hit",
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self._generate = pc.generate_latest
        self.content_type = pc.CONTENT_TYPE_LATEST

    def observe(self, path, method, status, seconds):
        route = path if path in ROUTES else "other"
        self._requests.labels(route, method, str(status)).inc()
        self._latency.labels(route).observe(seconds)

    def outcome(self, label):
        self._outcomes.labels(label).inc()

    def hit_seconds(self, seconds):
        self._hits.observe(seconds)

    def text(self):
        return self._generate(self.registry)


class Measured:
    """ASGI middleware: every request's route, status and time to its response's start."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()

        async def sending(message):
            if message["type"] == "http.response.start":
                self.metrics.observe(scope["path"], scope["method"], message["status"],
                                     time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, sending)


@dataclasses.dataclass
class Prepared:
    """What is made before the server listens: a failure here stops ``bsc serve`` at once."""

    options: ServeOptions
    cache: BinarySemanticCache | None
    home: Home | None
    secret: bytes
    admin_token: str | None
    loaded: bool


def prepare(options):
    """Load the cache and the secrets; raise with the cause when they cannot be had."""
    _modules()
    home = Home(options.cache_dir) if options.cache_dir else None
    cache = home.load() if home else None
    loaded = cache is not None
    if options.redis is not None:
        return _prepare_shared(options)
    if cache is None and options.embedder == "none":
        # Keys only: the codes are never used, so the smallest encoder will do.
        cache = BinarySemanticCache(BinaryEncoder(embedding_dim=1, code_bits=64),
                                    max_entries=options.max_entries)
    return Prepared(options, cache, home, load_secret(options.cache_dir), _admin_token(options),
                    loaded)


def _shared_cache(options, encoder):
    from ..shared import SharedSemanticCache

    return SharedSemanticCache(options.redis, options.name, encoder,
                               max_entries=options.max_entries,
                               similarity_threshold=options.threshold)


def _prepare_shared(options):
    """Replicas on one Redis: the cache and the tenants' secret both live there."""
    from .tenancy import shared_secret

    require("redis", "redis")
    cache = None
    if options.embedder == "none":
        cache = _shared_cache(options, BinaryEncoder(embedding_dim=1, code_bits=64))
    token = _admin_token(options)
    return Prepared(options, cache, None, shared_secret(options.redis, options.name), token,
                    cache is not None and len(cache) > 0)


def _admin_token(options):
    if not options.admin_token_file:
        return None
    token = Path(options.admin_token_file).read_text().strip()
    if len(token) < 16:
        raise ValueError(f"{options.admin_token_file}: expected an admin token of at least "
                         f"16 characters, got {len(token)}")
    return token


def create_app(options_or_prepared):
    """The Starlette app of a proxy; its lifespan opens the upstream client and the saver."""
    _modules()
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from .proxy import Proxy, error_response

    ready = (options_or_prepared if isinstance(options_or_prepared, Prepared)
             else prepare(options_or_prepared))
    options = ready.options
    holder = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        http = httpx.AsyncClient(timeout=httpx.Timeout(options.upstream_timeout),
                                 limits=httpx.Limits(max_connections=512,
                                                     max_keepalive_connections=64))
        embedder = make_embedder(options.embedder, options.upstream, http)
        factory = None
        if options.redis is not None:
            factory = lambda encoder: _shared_cache(options, encoder)  # noqa: E731
        engine = Engine(embedder, ready.cache,
                        CachePolicy(similarity_threshold=options.threshold, ttl=options.ttl),
                        entries=options.max_entries, factory=factory)
        proxy = Proxy(options, engine, http, ready.secret, ready.admin_token, metrics)
        holder["proxy"] = proxy
        saver = asyncio.create_task(_save_every(proxy, ready.home)) if ready.home else None
        try:
            yield
        finally:
            if saver is not None:
                saver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await saver
                await _save(proxy, ready.home, "at exit")
            await http.aclose()
            if options.redis is not None and engine.cache is not None:
                await asyncio.to_thread(engine.cache.close)

    def cache():
        proxy = holder.get("proxy")
        return proxy.engine.cache if proxy else ready.cache

    metrics = Metrics(lambda: holder["proxy"].engine.stats(), cache)

    async def chat(request):
        return await holder["proxy"].chat(request)

    async def forward(request):
        return await holder["proxy"].forward(request)

    async def healthz(request):
        return JSONResponse({"status": "ok"})

    async def scrape(request):
        return Response(metrics.text(), media_type=metrics.content_type)

    async def stats(request):
        return JSONResponse(_stats(holder["proxy"]))

    async def flush(request):
        return await holder["proxy"].flush(request)

    async def not_found(request, exc):
        return error_response(exc.status_code, f"{request.method} {request.url.path}: "
                              f"{exc.detail}")

    async def crashed(request, exc):
        log.exception("request failed: %s %s", request.method, request.url.path)
        return error_response(500, f"the proxy failed: {type(exc).__name__}: {exc}",
                              "proxy_error")

    from starlette.exceptions import HTTPException

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", forward, methods=["GET"]),
        Route("/v1/models/{model:path}", forward, methods=["GET"]),
        Route("/v1/embeddings", forward, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", scrape, methods=["GET"]),
        Route("/bsc/stats", stats, methods=["GET"]),
        Route("/bsc/flush", flush, methods=["POST"]),
    ], lifespan=lifespan, exception_handlers={HTTPException: not_found, Exception: crashed})
    return Measured(app, metrics)


def _stats(proxy):
    s = proxy.engine.stats()
    llm = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
    llm["lookups"] = {f"{tier}/{result}": n for (tier, result), n in s.lookups.items()}
    llm["bypasses"], llm["skipped_stores"] = dict(s.bypasses), dict(s.skipped_stores)
    cache = proxy.engine.cache
    return {"llm": llm, "cache": None if cache is None else dataclasses.asdict(cache.stats()),
            "flushes": proxy.flushes, "upstream": proxy.options.upstream,
            "embedder": proxy.options.embedder, "shared_tenants": proxy.options.shared_tenants}


async def _save_every(proxy, home):
    while True:
        await asyncio.sleep(proxy.options.save_interval)
        await _save(proxy, home, "on schedule")


async def _save(proxy, home, when):
    cache = proxy.engine.cache
    if cache is None or cache.closed:
        return
    s = proxy.engine.stats()
    mark = (s.stores, s.hits, proxy.flushes, len(cache))
    try:
        if await asyncio.to_thread(home.save, cache, mark):
            log.info("saved %d entries to %s (%s)", len(cache), home.path, when)
    except Exception:  # noqa: BLE001  (a failed save keeps the previous one; serve on)
        log.exception("saving the cache to %s failed (%s); the previous save is intact",
                      home.path, when)


def summary(ready):
    """What ``bsc serve`` prints at start: one screen."""
    o = ready.options
    cache = ready.cache
    if cache is not None:
        size = f"{len(cache):,} of {cache.max_entries:,} entries"
    else:
        size = f"empty, up to {o.max_entries:,} entries (made at the first embedding)"
    if o.redis is not None:
        where = f"Redis {o.redis}, shared cache {o.name!r} (replicas share it)"
    elif ready.home:
        where = f"{ready.home.path} ({'loaded' if ready.loaded else 'new'})"
    else:
        where = "memory only (--cache-dir to keep it)"
    return "\n".join([
        f"bsc serve: listening on http://{o.host}:{o.port}/v1",
        f"  upstream   {o.upstream} (timeout {o.upstream_timeout:g} s)",
        f"  embedder   {o.embedder}" + (" (exact matches only)" if o.embedder == "none" else
                                        f", threshold {o.threshold:g}"),
        f"  cache      {size}; ttl {'none' if o.ttl is None else f'{o.ttl:g} s'}",
        f"  saved to   {where}" + (f", every {o.save_interval:g} s and at exit"
                                  if ready.home else ""),
        "  tenants    " + ("shared: every API key sees every entry" if o.shared_tenants
                           else "isolated by an HMAC of each API key"),
        "  flush      " + ("allowed with X-BSC-Admin-Token" if ready.admin_token
                           else "off (no --admin-token-file)"),
    ])


def serve(options, *, out=print):
    """Run the proxy until SIGTERM or SIGINT (which save the cache first)."""
    ready = prepare(options)
    app = create_app(ready)
    uvicorn = require("uvicorn", "server")
    out(summary(ready), flush=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # httpx names every request at INFO: one line per upstream call is noise, not news.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning",
                access_log=False, lifespan="on", timeout_graceful_shutdown=30)
