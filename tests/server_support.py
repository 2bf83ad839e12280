"""``bsc serve`` as a subprocess on a free loopback port, stopped by its pid."""

import os
import signal
import subprocess
import sys
import time

import httpx

from .fake_servers import free_port


class Launched:
    """A server as a subprocess on a free loopback port, ready once ``health`` answers 200.

    ``stop()`` sends SIGTERM and waits, ``kill()`` SIGKILL; both by the pid.
    """

    def __init__(self, name, command, port, log_path, health, *, env=None, wait=30.0):
        self.name, self.port, self.log_path, self.health = name, port, log_path, health
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1",
                                             **(env or {})})
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.process.returncode}:\n"
                                   + self.output())
            try:
                if httpx.get(self.url + health, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{name} did not answer {health} in time:\n" + self.output())

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


class Served(Launched):
    """One ``bsc serve`` process in front of ``upstream``."""

    def __init__(self, upstream, tmp_path, *args, wait=30.0):
        port = free_port()
        command = [sys.executable, "-m", "binary_semantic_cache.cli", "serve", "--upstream",
                   upstream, "--port", str(port), *args]
        super().__init__("bsc serve", command, port, tmp_path / f"serve-{port}.log",
                         "/healthz", wait=wait)
