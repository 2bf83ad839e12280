"""A dependency-free progress bar for long command-line steps."""

import sys
import time


class Progress:
    """Count steps of a task, redrawing one line on a terminal.

    Off a terminal (CI logs, pipes) it prints a single line when the task ends,
    so logs stay short.
    """

    def __init__(self, label, total, *, stream=None, width=30):
        self.label, self.total, self.width = label, total, width
        self.stream = stream if stream is not None else sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0
        self._start = self._drawn = time.perf_counter()

    def update(self, n=1):
        self.done += n
        now = time.perf_counter()
        if self.live and now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now, end="\r")

    def close(self):
        self._draw(time.perf_counter(), end="\n")

    def _draw(self, now, end):
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"{self.label:<22} [{bar}] {self.done:>7,}/{self.total:,} "
                          f"{now - self._start:6.1f}s{end}")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
