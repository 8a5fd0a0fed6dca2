"""The textbook forms of the ops the chapters derive agree with the fast forms the models use,
and their backwards pass gradient checks in float64."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minilm
from minilm import ops


def close(a, b, rel=1e-12, scale=None):
    """max |a - b| <= rel * scale; scale: the size of what was summed (default: of b), since a
    gradient made of terms that cancel is only as exact as the terms."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    scale = max(float(np.abs(b).max()) if scale is None else scale, 1e-300)
    assert float(np.abs(a - b).max()) <= rel * scale, float(np.abs(a - b).max()) / scale


shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(2, 9))


@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_layernorm_textbook_equals_fast(shape, seed):
    rng = np.random.default_rng(seed)
    x, dout = 3 * rng.standard_normal((2,) + shape) + 1
    gamma, beta = rng.standard_normal((2, shape[-1]))
    fast, fcache = ops.layernorm_forward(x, gamma, beta)
    text, tcache = ops.layernorm_forward_textbook(x, gamma, beta)
    close(fast, text)
    terms = float(np.abs(dout * gamma).max() * np.abs(tcache[1]).max())     # |g| rstd
    for a, b in zip(ops.layernorm_backward(dout, fcache), ops.layernorm_backward_textbook(dout, tcache)):
        close(a, b, 1e-11, max(terms, float(np.abs(b).max())))


@given(shape=shapes, seed=st.integers(0, 2**32 - 1), masked=st.booleans())
def test_softmax_textbook_equals_fast(shape, seed, masked):
    rng = np.random.default_rng(seed)
    x, dout = 4 * rng.standard_normal((2,) + shape)
    mask = rng.random(shape) > 0.4 if masked else None
    if masked:
        mask[0, 0] = False                                    # a fully masked row: zeros, never NaN
    fast, fcache = ops.softmax_forward(x, mask)
    text, tcache = ops.softmax_forward_textbook(x, mask)
    close(fast, text)
    assert np.isfinite(text).all()
    close(ops.softmax_backward(dout, fcache), ops.softmax_backward_textbook(dout, tcache), 1e-11,
          float(np.abs(dout).max()))                          # P <= 1: |dout| bounds the terms


@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_gelu_textbook_equals_fast(shape, seed):
    rng = np.random.default_rng(seed)
    x, dout = 2 * rng.standard_normal((2,) + shape)
    fast, fcache = ops.gelu_tanh_forward(x)
    text, tcache = ops.gelu_tanh_forward_textbook(x)
    close(fast, text)
    close(ops.gelu_tanh_backward(dout, fcache), ops.gelu_tanh_backward_textbook(dout, tcache), 1e-11)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_textbook_equals_fast(dropout, masked):
    rng = np.random.default_rng(3)
    B, H, T, S, D = 2, 3, 4, 6, 5
    q = rng.standard_normal((B, H, T, D))
    k, v = rng.standard_normal((2, B, H, S, D))
    dout = rng.standard_normal((B, H, T, D))
    mask = None
    if masked:
        mask = ops.causal_mask(np, T, S) & ops.padding_mask(np.array([[1] * S, [1, 1, 1, 0, 0, 0]]))
    fast, fcache = ops.attention_forward(q, k, v, mask, dropout, np.random.default_rng(7) if dropout else None)
    text, tcache = ops.attention_forward_textbook(q, k, v, mask, dropout,
                                                  np.random.default_rng(7) if dropout else None)
    close(fast, text)
    for a, b in zip(ops.attention_backward(dout, fcache), ops.attention_backward_textbook(dout, tcache)):
        close(a, b, 1e-11)


def test_textbook_backwards_pass_gradcheck():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5))
    g, b = rng.standard_normal((2, 5))
    assert minilm.gradcheck((ops.layernorm_forward_textbook, ops.layernorm_backward_textbook), x, g, b)
    assert minilm.gradcheck((ops.softmax_forward_textbook, ops.softmax_backward_textbook), x)
    assert minilm.gradcheck((ops.gelu_tanh_forward_textbook, ops.gelu_tanh_backward_textbook), x)
    q, k, v = rng.standard_normal((3, 1, 2, 4, 3))
    mask = ops.causal_mask(np, 4)
    assert minilm.gradcheck((ops.attention_forward_textbook, ops.attention_backward_textbook), q, k, v, mask=mask)
