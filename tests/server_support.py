"""``bsc serve`` as a subprocess on a free loopback port, stopped by its pid."""

import os
import signal
import subprocess
import sys
import time

import httpx

from .fake_servers import free_port


class Served:
    """One ``bsc serve`` process; ``stop()`` sends SIGTERM and waits, ``kill()`` SIGKILL."""

    def __init__(self, upstream, tmp_path, *args, wait=30.0):
        self.port = free_port()
        self.log_path = tmp_path / f"serve-{self.port}.log"
        self._log = open(self.log_path, "w")
        command = [sys.executable, "-m", "binary_semantic_cache.cli", "serve", "--upstream",
                   upstream, "--port", str(self.port), *args]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bsc serve exited with {self.process.returncode}:\n"
                                   + self.output())
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("bsc serve did not answer /healthz in time:\n" + self.output())

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def base(self):
        return self.url + "/v1"

    def output(self):
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self, timeout=30.0):
        """SIGTERM, then wait (bounded); True if the process ended on it cleanly.

        uvicorn shuts down gracefully, then re-raises the signal, as servers
        conventionally do: an exit "by SIGTERM" after the shutdown is clean.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout) in (0, -signal.SIGTERM)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        finally:
            self._log.close()

    def kill(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
