import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from binary_semantic_cache import BinaryEncoder

from . import naive


def test_projection_is_the_documented_gaussian_stream():
    enc = BinaryEncoder(embedding_dim=5, code_bits=64, seed=7)
    want = np.random.default_rng(7).standard_normal((5, 64)).astype(np.float32)
    assert np.array_equal(enc._planes, want)
    assert enc.fingerprint == BinaryEncoder(5, 64, 7).fingerprint
    assert enc.fingerprint != BinaryEncoder(5, 64, 8).fingerprint


@pytest.mark.parametrize("bits", [64, 128, 256, 320, 1024, 4096])
def test_encode_matches_naive_bit_order(bits):
    enc = BinaryEncoder(embedding_dim=24, code_bits=bits, seed=3)
    x = np.random.default_rng(bits).standard_normal(24)
    code = enc.encode(x)
    assert code.shape == (bits // 64,) and code.dtype == np.uint64
    assert code.tolist() == naive.encode(x.astype(np.float32), enc._planes.astype(np.float64))
    assert enc.n_words == bits // 64 and enc.code_bits == bits and enc.embedding_dim == 24


def test_batch_equals_rows_and_accepts_views_lists_and_dtypes():
    enc = BinaryEncoder(embedding_dim=16, code_bits=128)
    base = np.random.default_rng(0).standard_normal((6, 32))
    view = base[:, ::2]  # non-contiguous
    batch = enc.encode(view)
    assert batch.shape == (6, 2)
    for i, row in enumerate(view):
        assert enc.encode(row).tolist() == batch[i].tolist()
        assert enc.encode(row.tolist()).tolist() == batch[i].tolist()
        for dtype in (np.float16, np.float32, np.float64, np.longdouble):
            scaled = (row / np.abs(row).max()).astype(dtype)
            assert enc.encode(scaled).tolist() == enc.encode(scaled.astype(np.float32)).tolist()
    assert enc.encode(np.empty((0, 16))).shape == (0, 2)


def test_scale_does_not_change_the_code():
    enc = BinaryEncoder(embedding_dim=32)
    x = np.random.default_rng(1).standard_normal(32)
    code = enc.encode(x).tolist()
    for scale in (1e-200, 1e-20, 1.0, 1e20, 1e200):
        assert enc.encode(x * scale).tolist() == code


@given(st.integers(0, 2**32 - 1))
def test_opposite_vectors_get_opposite_codes(seed):
    enc = BinaryEncoder(embedding_dim=8, code_bits=64, seed=seed % 1000)
    x = np.random.default_rng(seed).standard_normal(8)
    code, inverse = enc.encode(x), enc.encode(-x)
    assert (code ^ inverse).tolist() == [2**64 - 1]


@pytest.mark.parametrize("kwargs, err, text", [
    ({"embedding_dim": 0}, ValueError, "embedding_dim"),
    ({"embedding_dim": 8, "code_bits": 100}, ValueError, "multiple of 64"),
    ({"embedding_dim": 8, "code_bits": 8192}, ValueError, "code_bits"),
    ({"embedding_dim": 8, "code_bits": 0}, ValueError, "code_bits"),
    ({"embedding_dim": 8.5}, TypeError, "integer"),
    ({"embedding_dim": 8, "seed": -1}, ValueError, "seed"),
    ({"embedding_dim": 8, "seed": None}, TypeError, "seed"),
])
def test_bad_encoder_arguments(kwargs, err, text):
    with pytest.raises(err, match=text):
        BinaryEncoder(**kwargs)


@pytest.mark.parametrize("x, err, text", [
    (np.ones(7), ValueError, "length 8.*got length 7"),
    (np.ones((2, 2, 8)), ValueError, "shape"),
    (np.full(8, np.nan), ValueError, "finite.*index 0"),
    (np.array([1, 2, np.inf, 0, 0, 0, 0, 0.0]), ValueError, "finite.*index 2"),
    (np.zeros(8), ValueError, "non-zero"),
    (np.array(["a"] * 8), TypeError, "real numbers"),
    (np.ones(8, complex), TypeError, "real numbers"),
    ("some text", TypeError, "embed the text"),
    ([[1.0, 2.0], [3.0]], TypeError, "array of numbers"),
])
def test_bad_embeddings_name_expected_and_found(x, err, text):
    with pytest.raises(err, match=text):
        BinaryEncoder(embedding_dim=8).encode(x)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_integer_extremes_encode_as_their_float_values(dtype):
    enc = BinaryEncoder(embedding_dim=4, code_bits=64, seed=3)
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    rows = np.array([[low] * 4, [low, 0, 0, 0], [high, low, 1, -1], [high] * 4], dtype)
    assert enc.encode(rows).tolist() == enc.encode(rows.astype(np.float64)).tolist()
    # The minimum is negative: its code is the inverse of the maximum's, not equal to it.
    assert (enc.encode(rows[0]) ^ enc.encode(rows[3])).tolist() == [2**64 - 1]


@given(st.lists(st.integers(-128, 127), min_size=4, max_size=4).filter(any))
def test_int8_embeddings_encode_as_float(values):
    enc = BinaryEncoder(embedding_dim=4, code_bits=64, seed=3)
    x = np.array(values, np.int8)
    assert enc.encode(x).tolist() == enc.encode(x.astype(np.float32)).tolist()
