"""Server-sent events: cutting a byte stream into events, and writing them."""

import json


class EventCutter:
    """Feeds of bytes in, whole events (their raw bytes and their data) out."""

    def __init__(self):
        self._buffer = b""

    def feed(self, data):
        """The events ``data`` completes, as ``(raw, payload)``; payload is the joined data lines."""
        self._buffer += data.replace(b"\r\n", b"\n")
        out = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return out
            raw, self._buffer = self._buffer[:end + 2], self._buffer[end + 2:]
            lines = [line[5:].lstrip(b" ") for line in raw.split(b"\n")
                     if line.startswith(b"data:")]
            out.append((raw, b"\n".join(lines) if lines else None))

    @property
    def pending(self):
        """Bytes of an event begun and not ended."""
        return self._buffer


def event(payload):
    """One ``data:`` event of a JSON payload."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
