"""What ``bsc serve`` is told: one frozen record, checked once."""

import math
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ServeOptions:
    """Settings of one proxy.

    ======================  ============  ==============================================
    field                   default       meaning
    ======================  ============  ==============================================
    ``upstream``            (required)    base URL of the OpenAI-compatible API, with its
                                          ``/v1`` (``http://127.0.0.1:11434/v1``)
    ``host``, ``port``      127.0.0.1,    where the proxy listens
                            8000
    ``embedder``            ``"none"``    ``none``, ``upstream:MODEL``, ``ollama:MODEL``
                                          or ``openai:MODEL``
    ``cache_dir``           None          loaded at start, saved every
                                          ``save_interval`` and at exit; None: memory only
    ``max_entries``         10,000        capacity of a new cache
    ``threshold``           0.90          least similarity of a semantic hit
    ``ttl``                 None          seconds an answer lives; None: until evicted
    ``save_interval``       60            seconds between saves
    ``upstream_timeout``    600           seconds an upstream call may take
    ``max_body``            10,000,000    bytes a request body may have
    ``shared_tenants``      False         one cache for every API key
    ``admin_token_file``    None          a file holding the token ``/bsc/flush`` needs
    ``redis``               None          share the cache with other replicas on this
                                          Redis (``redis://host:port/db``)
    ``name``                ``"bsc"``     the shared cache's name in Redis
    ======================  ============  ==============================================
    """

    upstream: str
    host: str = "127.0.0.1"
    port: int = 8000
    embedder: str = "none"
    cache_dir: str | None = None
    max_entries: int = 10_000
    threshold: float = 0.90
    ttl: float | None = None
    save_interval: float = 60.0
    upstream_timeout: float = 600.0
    max_body: int = 10_000_000
    shared_tenants: bool = False
    admin_token_file: str | None = None
    redis: str | None = None
    name: str = "bsc"

    def __post_init__(self):
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected --upstream as an http(s) URL such as "
                             f"https://api.openai.com/v1, got {self.upstream!r}")
        object.__setattr__(self, "upstream", self.upstream.rstrip("/"))
        kind = self.embedder.split(":", 1)[0]
        if self.embedder != "none" and (kind not in ("upstream", "ollama", "openai")
                                        or not self.embedder.partition(":")[2]):
            raise ValueError(f"expected --embedder as none, upstream:MODEL, ollama:MODEL or "
                             f"openai:MODEL, got {self.embedder!r}")
        if self.redis is not None and self.cache_dir is not None:
            raise ValueError("expected --redis or --cache-dir, not both: with --redis the "
                             "cache lives in Redis")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"expected --port from 0 to 65535, got {self.port}")
        for name in ("max_entries", "max_body"):
            if getattr(self, name) < 1:
                raise ValueError(f"expected --{name.replace('_', '-')} of at least 1, got "
                                 f"{getattr(self, name)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"expected --threshold from 0 to 1, got {self.threshold}")
        for name in ("ttl", "save_interval", "upstream_timeout"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"expected --{name.replace('_', '-')} as a positive number of "
                                 f"seconds, got {value}")
