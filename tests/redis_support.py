"""A real ``redis-server`` on a free loopback port in a temporary directory, stopped by its pid."""

import os
import shutil
import signal
import subprocess
import time

import pytest

from .fake_servers import free_port

BINARY = shutil.which("redis-server")
_REASON = ("no redis-server on PATH: install it (apt-get install redis-server) to run the "
           "shared-cache tests; CI installs it")
if BINARY is None and os.environ.get("BSC_REQUIRE_REDIS"):
    raise RuntimeError(_REASON.replace("no redis-server", "BSC_REQUIRE_REDIS is set but no "
                                       "redis-server is"))
needs_redis = pytest.mark.skipif(BINARY is None, reason=_REASON)


class RedisServer:
    """``redis-server`` with append-only persistence (a restart keeps the data) or none."""

    def __init__(self, folder, persistent=True):
        self.folder, self.persistent = folder, persistent
        self.port = free_port()
        self.process = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        command = [BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                   str(self.folder), "--save", "", "--appendonly",
                   "yes" if self.persistent else "no", "--appendfsync", "always"]
        self.log = open(os.path.join(self.folder, f"redis-{self.port}.log"), "a")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        import redis

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer PING within 15 s")

    def stop(self, sig=signal.SIGTERM):
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()

    def restart(self, empty=False):
        self.stop()
        if empty:
            for name in os.listdir(self.folder):
                if name.startswith("appendonly") or name.endswith(".rdb"):
                    path = os.path.join(self.folder, name)
                    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        self.start()

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_timeout=5)


@pytest.fixture
def redis_server(tmp_path):
    if BINARY is None:
        pytest.skip(_REASON)
    pytest.importorskip("redis")
    server = RedisServer(tmp_path)
    yield server
    server.stop()
