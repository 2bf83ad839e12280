"""What every backend shares: input checks, normalisation, rate limits, retries."""

import importlib
import math
import threading

import numpy as np

from ..errors import MissingExtraError


def require(module, extra):
    """Import an optional dependency, or say exactly what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"this backend needs the '{module}' package, which is not installed; run "
            f"pip install 'binary-semantic-cache[{extra}]'") from None


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


def normalised(rows):
    """float32 rows scaled to unit L2 norm (a zero row stays zero)."""
    out = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(out, axis=-1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


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
        if math.isfinite(seconds) and 0 <= seconds <= 600:
            return seconds
    return None
