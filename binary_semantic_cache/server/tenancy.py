"""Tenants: entries partitioned by a keyed hash of the caller's Authorization header.

The raw header is never stored or logged. The key of the hash is a per-cache
secret kept beside the saved cache, so tenants keep their entries across
restarts and nobody without the secret can tell which key made which entry.
"""

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_FILE = "tenant.secret"


def load_secret(cache_dir):
    """The cache directory's secret, made (mode 0600) on first use; random without a directory."""
    if cache_dir is None:
        return secrets.token_bytes(32)
    path = Path(cache_dir) / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        text = path.read_text().strip()
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            secret = b""
        if len(secret) != 32:
            raise ValueError(f"{path}: expected 64 hex digits (the tenants' secret), got "
                             f"{len(text)} characters; restore it from a backup, or delete it "
                             "and the saved cache beside it") from None
        return secret
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex() + "\n")
    return secret


def shared_secret(redis_url, name):
    """The tenants' secret kept in Redis, so every replica partitions alike (made once)."""
    from .._optional import require

    client = require("redis", "redis").Redis.from_url(redis_url, socket_timeout=5)
    try:
        key = f"bsc:{{{name}}}:tenant-secret"
        client.set(key, secrets.token_bytes(32), nx=True)
        return client.get(key)
    finally:
        client.close()


def tenant_of(secret, authorization):
    """The tenant namespace of an ``Authorization`` header value (None or "" is a tenant too)."""
    digest = hmac.new(secret, (authorization or "").encode("utf-8", "surrogateescape"),
                      hashlib.sha256).hexdigest()
    return "~" + digest[:32]
