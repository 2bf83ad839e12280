"""The one gate user input passes through before it reaches a kernel.

Each function returns a value of exactly the type and shape the kernels need,
or raises ``TypeError``/``ValueError`` naming what was expected, what came,
and how to fix it. Past this gate nothing is checked again.
"""

import math
import numbers

import numpy as np

MAX_ENTRIES_LIMIT = 2**31 - 1  # slots are linked with int32 indices


def embeddings(x, dim, *, ndim, what="embedding"):
    """``x`` as C-contiguous float32 rows, ready to project.

    ``ndim`` is 1, 2, or None (either). Rows whose squared norm is comfortably
    inside float32's range pass through unscaled (without a copy when they are
    float32 already); others are scaled to max-abs 1 first, so float64 values
    beyond float32's range neither overflow nor flush to zero. Scaling by a
    positive number changes no sign the projection sees.
    """
    if (type(x) is np.ndarray and x.dtype == np.float32 and x.ndim == 1 == ndim
            and x.shape[0] == dim and x.flags.c_contiguous):
        # The common single embedding, checked with the least work: squares of
        # float32 values cannot overflow in float64, so this dot raises no
        # floating-point warning (a float32 dot would, and an errstate around it
        # costs more than the widening); NaN or inf fall outside the band.
        wide = x.astype(np.float64)
        if _SQ_LOW < float(wide @ wide) < _SQ_HIGH:
            return x
    arr = x if type(x) is np.ndarray else _numeric_array(x, what)
    if arr.dtype.kind not in "fiu":
        _numeric_array(arr, what)
    if arr.dtype.kind in "iu":
        # Before any arithmetic: np.abs(int8(-128)) is -128, and squares wrap.
        arr = arr.astype(np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(_ndim_message(arr, dim, ndim, what))
    if arr.ndim not in (1, 2):
        raise ValueError(_ndim_message(arr, dim, 1, what))
    if arr.shape[-1] != dim:
        raise ValueError(
            f"expected {what} of length {dim} (the encoder's embedding_dim), got length "
            f"{arr.shape[-1]}; embed with the model the encoder was built for, or build "
            f"the encoder with BinaryEncoder(embedding_dim={arr.shape[-1]})"
        )
    if arr.size == 0:
        return np.zeros(arr.shape, np.float32)
    if arr.dtype.kind == "f":
        with np.errstate(all="ignore"):
            sq = np.einsum("...i,...i->...", arr, arr)
            inside = np.all((sq > _SQ_LOW) & (sq < _SQ_HIGH))  # False for NaN and inf
        if inside:
            return np.ascontiguousarray(arr, dtype=np.float32)
    return _scaled(arr, dim, what)


def unit_rows(rows):
    """Rows that passed ``embeddings``, scaled to unit length (for rescoring copies)."""
    if rows.ndim == 1:
        return rows / np.float32(np.sqrt(rows @ rows))
    return rows / np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]


# Squared norms inside this band cast to float32 without overflow or underflow.
_SQ_LOW, _SQ_HIGH = 1e-30, 1e30


def _scaled(arr, dim, what):
    rows = arr.reshape(-1, dim)
    with np.errstate(invalid="ignore", over="ignore"):
        peak = np.max(np.abs(rows), axis=1)
    bad = ~np.isfinite(peak)
    if bad.any():
        row = int(np.argmax(bad))
        col = int(np.argmax(~np.isfinite(rows[row])))
        where = f"row {row}, index {col}" if arr.ndim == 2 else f"index {col}"
        raise ValueError(
            f"expected finite numbers in {what}, got {rows[row, col]} at {where}; "
            "check the embedding model's output or drop that input"
        )
    if (peak == 0).any():
        row = int(np.argmax(peak == 0))
        where = f" (row {row})" if arr.ndim == 2 else ""
        raise ValueError(
            f"expected a non-zero {what}, got all zeros{where}: a zero vector has no "
            "direction, so no similarity to anything; check the embedding model's output"
        )
    scaled = rows / peak[:, None]
    return np.ascontiguousarray(scaled, dtype=np.float32).reshape(arr.shape)


def _numeric_array(x, what):
    if isinstance(x, (str, bytes)):
        raise TypeError(f"expected {what} as an array of numbers, got {type(x).__name__}; "
                        "embed the text first, e.g. backend.embed_text(text)")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"expected {what} as an array of numbers, got {type(x).__name__} "
                        f"that NumPy cannot read as one ({exc}); pass a list or numpy array "
                        "of floats") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(
            f"expected {what} of real numbers, got dtype {arr.dtype} "
            f"(from {type(x).__name__}); pass floats, e.g. np.asarray(x, dtype=np.float32)"
        )
    return arr


def _ndim_message(arr, dim, ndim, what):
    if ndim == 1:
        return (f"expected one {what}, a 1-D array of shape ({dim},), got shape "
                f"{arr.shape}; for many at once use get_batch/put_batch")
    return (f"expected a 2-D array of shape (n, {dim}), got shape {arr.shape}; "
            "stack the embeddings, e.g. np.stack(list_of_vectors)")


def threshold(value, name="threshold"):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"expected {name} as a number in [-1, 1], got "
                        f"{type(value).__name__} {value!r}; pass e.g. 0.8")
    value = float(value)
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"expected {name} in [-1, 1] (an estimated cosine), got {value}; "
                         "pass e.g. 0.8 for close paraphrases")
    return value


def ttl(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"expected ttl as seconds (a number) or None, got "
                        f"{type(value).__name__} {value!r}")
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"expected ttl > 0 seconds and finite, got {value}; "
                         "pass None for entries that never expire")
    return value


def clock_value(value):
    """A clock reading as a finite float64 (numpy scalars and ints widened exactly)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"expected the clock to return epoch seconds as a real number, got "
                        f"{type(value).__name__} {value!r}; pass a clock such as time.time")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"expected the clock to return a finite time, got {value}; with it "
                         "no entry would ever expire, or every entry at once")
    return value


def expiry(now, ttl):
    """``now + ttl`` in float64, refused when the sum cannot be told from ``now``."""
    expires = now + ttl
    if not expires > now:
        raise ValueError(f"expected a ttl that the clock can represent, got ttl={ttl} s at clock "
                         f"time {now!r}, where now + ttl == now in float64; use a clock in epoch "
                         "seconds such as time.time, or a longer ttl")
    return expires


def positive_int(value, name, *, low=1, high=MAX_ENTRIES_LIMIT):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"expected {name} as an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"expected {name} between {low:,} and {high:,}, got {value:,}")
    return value


def batch_length(n_embeddings, responses):
    try:
        n = len(responses)
    except TypeError:
        raise TypeError(f"expected responses as a sequence (one per embedding), got "
                        f"{type(responses).__name__}") from None
    if n != n_embeddings:
        raise ValueError(f"expected one response per embedding ({n_embeddings:,}), got "
                         f"{n:,} responses; pass lists of equal length")


MAX_NAME_BYTES = 4096  # of a namespace or a key, UTF-8 encoded


def namespace(value, what="namespace"):
    """A namespace name: a str of at most 4 KiB in UTF-8, or None for the default."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected {what} as a str or None (the default namespace), got "
                        f"{type(value).__name__}; pass a name such as {what}='tenant-42'")
    if len(value) > MAX_NAME_BYTES // 4 and len(
            value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise ValueError(f"expected {what} of at most {MAX_NAME_BYTES:,} bytes in UTF-8, got "
                         f"{len(value.encode('utf-8', 'surrogatepass')):,}; use a short name, "
                         "e.g. a hash of what it stands for")
    return str(value)


def key(value, what="key"):
    """``(tagged bytes, key)`` of an exact key: a str or bytes of at most 4 KiB."""
    if isinstance(value, str):
        record = b"s" + value.encode("utf-8", "surrogatepass")
        value = str(value)
    elif isinstance(value, bytes):
        record = b"b" + value
        value = bytes(value)
    else:
        raise TypeError(f"expected {what} as a str or bytes, got {type(value).__name__}; pass "
                        "e.g. a hash of the normalised prompt, hashlib.sha256(p).hexdigest()")
    if len(record) > MAX_NAME_BYTES + 1:
        raise ValueError(f"expected {what} of at most {MAX_NAME_BYTES:,} bytes, got "
                         f"{len(record) - 1:,}; pass a hash of it instead")
    return record, value


def keys(values, n):
    """The ``keys=`` of a batch of ``n`` rows: None, or ``n`` str/bytes keys."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise TypeError("expected keys as a sequence of str or bytes keys, one per row, got a "
                        f"single {type(values).__name__}; wrap it in a list")
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"expected keys as a sequence of str or bytes, one per row, or None, "
                        f"got {type(values).__name__}") from None
    if len(values) != n:
        raise ValueError(f"expected {n} keys (one per row), got {len(values)}; pass keys of the "
                         "same length as the embeddings")
    return [key(v, f"keys[{i}]") for i, v in enumerate(values)]
