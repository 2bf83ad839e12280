"""OpenAI embeddings through the official ``openai`` client, with budgets and retries."""

import base64
import math
import os
import random
import threading
import time

import numpy as np

from ..errors import BackendAuthError, BackendConnectionError, BackendError, BackendRateLimitError
from ._common import (
    BackendBase,
    Deadline,
    TokenBucket,
    backoff,
    check_max_wait,
    check_texts,
    checked_rows,
    require,
    retry_after,
)

#: US dollars per million input tokens (openai.com/api/pricing, 2026-11). Override
#: per backend with ``prices={model: usd}`` or by editing this dict.
PRICES_PER_MILLION_TOKENS = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}

MODEL_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
              "text-embedding-ada-002": 1536}

MAX_INPUTS_PER_REQUEST = 2048  # the API's limit on ``input`` items
MAX_TOKENS_PER_REQUEST = 300_000  # the API's limit on tokens summed over one request


class OpenAIEmbeddingBackend(BackendBase):
    """Embeddings from OpenAI's API, batched, rate-limited and retried.

    Parameters
    ----------
    api_key : str, optional
        Defaults to ``OPENAI_API_KEY``.
    model : str, default "text-embedding-3-small"
    base_url : str, optional
        Defaults to ``OPENAI_BASE_URL``, then the public API.
    dimensions : int, optional
        Shorter vectors from the text-embedding-3 models.
    rpm_limit, tpm_limit : int
        Requests and tokens per minute this backend allows itself (a token
        bucket each, so bursts up to a minute's budget go through at once).
    max_retries : int, default 5
        Retries after the first attempt, on 429, 5xx, connection errors and
        timeouts; waits honour ``Retry-After``, else exponential backoff with
        jitter. The client's own retries are off, so these are all the attempts.
    timeout : float, default 60.0
        Seconds per HTTP read.
    max_wait : float, default 60.0
        Seconds one ``embed_texts`` call may take in all: attempts, budget
        waits and retry sleeps. A ``Retry-After`` or budget wait that would
        pass it raises at once; a server still sending when it passes is left
        behind with a :class:`BackendConnectionError`.
    organization : str, optional
    prices : dict, optional
        USD per million tokens by model, over ``PRICES_PER_MILLION_TOKENS``.
    clock, sleep, asleep, rng : callables, keyword-only
        Time source and waits (``time.monotonic``, ``time.sleep``,
        ``asyncio.sleep``) and jitter source; inject fakes in tests.
    """

    def __init__(self, api_key=None, model="text-embedding-3-small", *, base_url=None,
                 dimensions=None, rpm_limit=3000, tpm_limit=1_000_000, max_retries=5,
                 timeout=60.0, max_wait=60.0, organization=None, prices=None,
                 clock=time.monotonic, sleep=time.sleep, asleep=None, rng=random.random):
        self._openai = require("openai", "openai")
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise BackendAuthError("no OpenAI API key: pass api_key=... or set OPENAI_API_KEY")
        if dimensions is not None and not model.startswith("text-embedding-3"):
            raise ValueError(f"dimensions= works with the text-embedding-3 models, not {model!r}")
        if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
            raise ValueError(f"expected dimensions as a positive integer, got {dimensions!r}")
        if max_retries < 0 or rpm_limit <= 0 or tpm_limit <= 0:
            raise ValueError("expected max_retries >= 0 and positive rpm_limit and tpm_limit, got "
                             f"{max_retries}, {rpm_limit}, {tpm_limit}")
        self._model, self._dimensions = model, dimensions
        self._max_retries, self._max_wait = max_retries, check_max_wait(max_wait)
        self._timeout, self._clock = timeout, clock
        self._options = dict(api_key=api_key, base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
                             organization=organization, max_retries=0, timeout=timeout)
        self._client = self._openai.OpenAI(**self._options)
        self._aclient = None
        self._prices = {**PRICES_PER_MILLION_TOKENS, **(prices or {})}
        self._bucket = TokenBucket(rpm_limit, tpm_limit, clock)
        self._sleep, self._asleep, self._rng = sleep, asleep, rng
        self._dim = dimensions or MODEL_DIMS.get(model)
        self._count_tokens = _token_counter(model)
        self._lock = threading.Lock()
        self.reset_stats()

    # ------------------------------------------------------------ public calls

    def embed_texts(self, texts):
        """L2-normalised float32 rows, shape ``(len(texts), embedding_dim)``, in input order."""
        texts = check_texts(texts)
        deadline = self._deadline()
        parts = [self._request(batch, tokens, deadline) for batch, tokens in self._batches(texts)]
        return self._stack(parts)

    async def aembed_texts(self, texts):
        texts = check_texts(texts)
        deadline = self._deadline()
        parts = [await self._arequest(batch, tokens, deadline)
                 for batch, tokens in self._batches(texts)]
        return self._stack(parts)

    def get_stats(self):
        """Requests, HTTP attempts, retries, tokens, texts, seconds waited and USD so far."""
        with self._lock:
            stats = dict(self._stats)
        price = self._prices.get(self._model)
        stats["cost_usd"] = None if price is None else stats["tokens"] * price / 1e6
        return stats

    def reset_stats(self):
        with self._lock:
            self._stats = {"model": self._model, "requests": 0, "http_attempts": 0,
                           "retries": 0, "tokens": 0, "texts": 0, "waited_s": 0.0}

    # ------------------------------------------------------------ internals

    def _batches(self, texts):
        batch, tokens = [], 0
        for text in texts:
            n = self._count_tokens(text)
            if batch and (len(batch) == MAX_INPUTS_PER_REQUEST
                          or tokens + n > MAX_TOKENS_PER_REQUEST):
                yield batch, tokens
                batch, tokens = [], 0
            batch.append(text)
            tokens += n
        if batch:
            yield batch, tokens

    def _deadline(self):
        return Deadline(self._max_wait, self._clock, "OpenAI embeddings")

    def _request(self, batch, tokens, deadline):
        for attempt in range(self._max_retries + 1):
            self._wait(self._budget(tokens, deadline), self._sleep)
            arguments = self._arguments(batch, deadline)
            try:
                response = deadline.run(lambda: self._client.embeddings.create(**arguments))
            except BackendConnectionError:
                raise  # out of time
            except Exception as exc:
                self._wait(deadline.allow(*self._after_failure(exc, attempt)), self._sleep)
                continue
            return self._accept(response, batch, tokens)
        raise AssertionError("unreachable: the last failure raises")

    async def _arequest(self, batch, tokens, deadline):
        import asyncio

        if self._aclient is None:
            self._aclient = self._openai.AsyncOpenAI(**self._options)
        if self._asleep is None:
            self._asleep = asyncio.sleep
        for attempt in range(self._max_retries + 1):
            await self._await(self._budget(tokens, deadline))
            arguments = self._arguments(batch, deadline)
            try:
                response = await asyncio.wait_for(
                    self._aclient.embeddings.create(**arguments), max(0.0, deadline.left()))
            except asyncio.TimeoutError:
                raise deadline.expired() from None
            except Exception as exc:
                await self._await(deadline.allow(*self._after_failure(exc, attempt)))
                continue
            return self._accept(response, batch, tokens)
        raise AssertionError("unreachable: the last failure raises")

    def _arguments(self, batch, deadline):
        extra = {} if self._dimensions is None else {"dimensions": self._dimensions}
        left = max(0.001, deadline.left())
        return dict(model=self._model, input=batch, encoding_format="base64",
                    timeout=min(self._timeout, left), **extra)

    def _budget(self, tokens, deadline):
        """The wait the rate budgets ask for, refused (and given back) past the deadline."""
        wait = self._bucket.reserve(tokens)
        try:
            return deadline.allow(wait, "the rpm_limit/tpm_limit budget",
                                  BackendRateLimitError)
        except BackendRateLimitError:
            self._bucket.cancel(tokens)
            raise

    def _wait(self, seconds, sleep):
        if seconds > 0:
            with self._lock:
                self._stats["waited_s"] += seconds
            sleep(seconds)

    async def _await(self, seconds):
        if seconds > 0:
            with self._lock:
                self._stats["waited_s"] += seconds
            await self._asleep(seconds)

    def _after_failure(self, exc, attempt):
        """``(seconds, why, error)`` before retrying ``exc``; raises when it must not be retried."""
        openai = self._openai
        with self._lock:
            self._stats["http_attempts"] += 1
        status = getattr(exc, "status_code", None)
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            raise BackendAuthError(f"OpenAI refused the credentials (HTTP {status}): "
                                   f"{_message(exc)}") from exc
        if isinstance(exc, openai.RateLimitError):
            kind = BackendRateLimitError
        elif isinstance(exc, openai.APIConnectionError):  # timeouts included
            kind = BackendConnectionError
        elif isinstance(exc, openai.APIStatusError) and status >= 500:
            kind = BackendError
        elif isinstance(exc, openai.APIStatusError):
            raise BackendError(f"OpenAI rejected the request (HTTP {status}): "
                               f"{_message(exc)}") from exc
        else:
            raise BackendError(f"OpenAI call failed: {type(exc).__name__}: {exc}") from exc
        if attempt == self._max_retries:
            raise kind(f"OpenAI embeddings failed after {attempt + 1} attempts; last: "
                       f"{type(exc).__name__} {'' if status is None else status} "
                       f"{_message(exc)}") from exc
        with self._lock:
            self._stats["retries"] += 1
        response = getattr(exc, "response", None)
        wait = retry_after(None if response is None else response.headers)
        if wait is None:
            why = f"backoff after {status or type(exc).__name__}"
            return backoff(attempt, self._rng), why, kind
        return wait, f"Retry-After of a {status}", kind

    def _accept(self, response, batch, tokens):
        data = getattr(response, "data", None)
        if not isinstance(data, list):
            raise BackendError(f"OpenAI answered without a list of embeddings: "
                               f"{str(response)[:120]}")
        indexes = [getattr(item, "index", None) for item in data]
        if not all(type(i) is int for i in indexes) or sorted(indexes) != list(range(len(batch))):
            raise BackendError(f"OpenAI answered indexes {indexes[:10]} for {len(batch)} inputs")
        by_index = dict(zip(indexes, data))
        rows = [_vector(by_index[i].embedding, i) for i in range(len(batch))]
        unit = checked_rows(rows, len(batch), self._dim, "OpenAI")
        usage = getattr(response, "usage", None)
        used = getattr(usage, "prompt_tokens", None)
        used = used if isinstance(used, int) and used > 0 else tokens
        with self._lock:
            self._stats["http_attempts"] += 1
            self._stats["requests"] += 1
            self._stats["tokens"] += used
            self._stats["texts"] += len(batch)
        self._dim = self._dim or unit.shape[1]
        return unit

    def _stack(self, parts):
        if not parts:
            return np.zeros((0, self.embedding_dim), np.float32)
        return np.concatenate(parts)


def _vector(embedding, i):
    """One answered embedding: base64 of little-endian float32, or a list of numbers."""
    if not isinstance(embedding, str):
        return embedding  # checked_rows says what is wrong with it, if anything
    try:
        raw = base64.b64decode(embedding, validate=True)
    except ValueError:
        raise BackendError(f"OpenAI answered text that is not base64 for input {i}: "
                           f"{embedding[:40]!r}") from None
    if len(raw) % 4:
        raise BackendError(f"OpenAI answered {len(raw)} bytes for input {i}, not a whole "
                           "number of float32 values")
    return np.frombuffer(raw, "<f4")


def _message(exc):
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return error["message"]
    return str(exc)


def _token_counter(model):
    """tiktoken's exact count when it and its encoding are available, else an estimate.

    The estimate is one token per four UTF-8 bytes, rounded up: English text
    averages about four characters a token, so budgets come out close.
    """
    try:
        import tiktoken

        encoding = tiktoken.encoding_for_model(model)
        return lambda text: len(encoding.encode(text, disallowed_special=()))
    except Exception:  # not installed, unknown model, or its encoding file not reachable
        return lambda text: max(1, math.ceil(len(text.encode("utf-8")) / 4))
