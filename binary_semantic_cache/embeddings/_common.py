"""What every backend shares: input and answer checks, deadlines, rate limits, retries."""

import math
import threading

import numpy as np

from .._optional import require  # noqa: F401  (the backends import it from here)
from ..errors import BackendConnectionError, BackendError


class BackendBase:
    """What both backends share: the name, the learnt dimension and the one-text calls.

    Subclasses set ``_model`` and ``_dim`` (None until known) and implement
    ``embed_texts`` and ``aembed_texts``.
    """

    @property
    def model_name(self):
        return self._model

    @property
    def embedding_dim(self):
        """Length of the vectors; when not known up front, learnt from one request."""
        if self._dim is None:
            self.embed_text("dimension probe")
        return self._dim

    def embed_text(self, text):
        """One L2-normalised float32 vector of shape ``(embedding_dim,)``."""
        return self.embed_texts([check_text(text)])[0]

    async def aembed_text(self, text):
        return (await self.aembed_texts([check_text(text)]))[0]


def check_texts(texts):
    """A list of non-empty strings, or ValueError naming the first bad index."""
    if isinstance(texts, (str, bytes)) or not hasattr(texts, "__iter__"):
        raise ValueError(f"expected a list of strings, got {type(texts).__name__}; "
                         "for one text use embed_text(text)")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"expected a string at index {i}, got {type(text).__name__}; "
                             "convert it with str() or drop it")
        if not text.strip():
            raise ValueError(f"expected non-empty text at index {i}, got {text!r}; an empty "
                             "string has no meaning to embed, so drop it")
    return texts


def check_text(text):
    if not isinstance(text, str):
        raise ValueError(f"expected a string, got {type(text).__name__}; for many texts use "
                         "embed_texts(list_of_strings)")
    return check_texts([text])[0]


def checked_rows(rows, n, dim, who):
    """The vectors a service answered, as unit float32 rows of shape ``(n, dim)``.

    ``dim`` is the length every vector must have, or None to take the first
    one's. Anything else (another count, ragged or wrong-length rows, strings,
    NaN, infinity, an all-zero row) raises a :class:`BackendError` that says
    what came back: a cache fed such vectors would answer nonsense.
    """
    if not isinstance(rows, (list, tuple)):
        raise BackendError(f"{who} answered {type(rows).__name__} {_short(rows)} where a list "
                           f"of {n} vectors was expected")
    if len(rows) != n:
        raise BackendError(f"{who} answered {len(rows)} vectors for {n} texts")
    vectors = []
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple, np.ndarray)):
            raise BackendError(f"{who} answered {type(row).__name__} {_short(row)} for text "
                               f"{i}, expected a list of numbers")
        try:
            vector = np.asarray(row)
        except ValueError:
            raise BackendError(f"{who} answered a ragged vector for text {i}: "
                               f"{_short(row)}") from None
        if vector.ndim != 1 or vector.size == 0 or vector.dtype.kind not in "iuf":
            raise BackendError(f"{who} answered {_short(row)} for text {i}, expected a flat "
                               "list of numbers")
        vectors.append(vector.astype(np.float64))
    if not vectors:
        return np.zeros((0, dim or 0), np.float32)
    want = dim or vectors[0].size
    for i, vector in enumerate(vectors):
        if vector.size != want:
            source = "embedding_dim" if dim else "the length of the batch's first vector"
            raise BackendError(f"{who} answered a {vector.size}-d vector for text {i}, "
                               f"expected {want} ({source})")
    matrix = np.stack(vectors)
    for i, row in enumerate(matrix):
        if not np.isfinite(row).all():
            raise BackendError(f"{who} answered {row[~np.isfinite(row)][0]} in the vector for "
                               f"text {i}; a vector must be finite numbers")
        if not row.any():
            raise BackendError(f"{who} answered an all-zero vector for text {i}: it has no "
                               "direction, so no similarity to anything")
    # Scaled to max-abs 1 first, so no square overflows or vanishes.
    matrix /= np.abs(matrix).max(axis=1, keepdims=True)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix.astype(np.float32)


def _short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Deadline:
    """The time left of one call, on the backend's clock.

    ``max_wait`` covers every attempt, budget wait and retry sleep of a call,
    so no server (slow, trickling, or asking to be retried in ten minutes)
    holds the caller longer than that.
    """

    def __init__(self, max_wait, clock, who):
        self.max_wait, self.clock, self.who = max_wait, clock, who
        self.end = clock() + max_wait

    def left(self):
        return self.end - self.clock()

    def allow(self, seconds, why, error=BackendError):
        """``seconds`` to wait, or ``error`` if waiting that long would pass the deadline."""
        if seconds > 0 and seconds >= self.left():
            raise error(f"{self.who}: {why} asks to wait {seconds:.3g} s, past the call's "
                        f"max_wait={self.max_wait:g} s ({max(0.0, self.left()):.3g} s left); "
                        "raise max_wait, or try again later")
        return seconds

    def run(self, call):
        """``call()`` in a worker thread; :class:`BackendConnectionError` once time is up.

        A per-read timeout cannot bound a server that sends a byte now and
        then; waiting on the worker can. A call past its time is left to end
        on its own, and its result is dropped.
        """
        left = self.left()
        if left <= 0:
            raise self.expired()
        done, box = threading.Event(), []

        def work():
            try:
                box.append((True, call()))
            except BaseException as exc:  # handed to the caller below
                box.append((False, exc))
            finally:
                done.set()

        threading.Thread(target=work, daemon=True, name="bsc-backend-call").start()
        if not done.wait(left):
            raise self.expired()
        ok, value = box[0]
        if ok:
            return value
        raise value

    def expired(self):
        return BackendConnectionError(f"{self.who} did not answer within the call's "
                                      f"max_wait={self.max_wait:g} s")


def check_max_wait(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 < value < math.inf):
        raise ValueError(f"expected max_wait as seconds > 0, got {value!r}")
    return float(value)


class TokenBucket:
    """Requests-per-minute and tokens-per-minute budgets, refilled continuously.

    ``reserve(tokens)`` books one request of ``tokens`` and returns how many
    seconds the caller must wait before sending it; the caller sleeps (with
    whatever sleep it was given), so tests never wait for real.
    """

    def __init__(self, rpm, tpm, clock):
        self.rates = (rpm / 60.0, tpm / 60.0)
        self.capacity = (float(rpm), float(tpm))
        self.level = list(self.capacity)
        self.clock = clock
        self.stamp = clock()
        self.lock = threading.Lock()

    def reserve(self, tokens):
        with self.lock:
            now = self.clock()
            elapsed = max(0.0, now - self.stamp)
            self.stamp = now
            wait = 0.0
            for i, need in enumerate((1.0, min(float(tokens), self.capacity[1]))):
                self.level[i] = min(self.capacity[i], self.level[i] + elapsed * self.rates[i])
                self.level[i] -= need  # may go negative: the debt is the wait
                if self.level[i] < 0:
                    wait = max(wait, -self.level[i] / self.rates[i])
            return wait

    def cancel(self, tokens):
        """Give back a reservation whose request was never sent."""
        with self.lock:
            for i, need in enumerate((1.0, min(float(tokens), self.capacity[1]))):
                self.level[i] = min(self.capacity[i], self.level[i] + need)


def backoff(attempt, rng, *, base=0.5, cap=30.0):
    """Exponential backoff with full jitter in [half, whole] of the step."""
    step = min(cap, base * 2 ** attempt)
    return step * (0.5 + 0.5 * rng())


def retry_after(headers):
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds), if present."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: fall back to backoff
        if math.isfinite(seconds) and seconds >= 0:
            return seconds  # however long: the call's deadline decides
    return None
