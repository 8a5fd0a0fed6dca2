"""Every op: float64 gradient checks on hypothesis-drawn shapes, known answers, backend parity."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minilm
from minilm import ops
from minilm.check import gradcheck
from minilm.losses import cross_entropy_backward, cross_entropy_forward

from conftest import distinct_dims

dims = st.integers(1, 6)
seeds = st.integers(0, 2**31 - 1)


def check_pair(fwd, bwd, *inputs, **kw):
    result = gradcheck((fwd, bwd), *inputs, **kw)
    assert result.ok, f"\n{result}"


@given(d=distinct_dims(B=(1, 4), T=(1, 6), Cin=(1, 7), Cout=(1, 7)), seed=seeds)
def test_linear_gradcheck(d, seed):
    B, T, Cin, Cout = d["B"], d["T"], d["Cin"], d["Cout"]
    rng = np.random.default_rng(seed)
    x, W, b = rng.standard_normal((B, T, Cin)), rng.standard_normal((Cin, Cout)), rng.standard_normal(Cout)
    check_pair(lambda x, W, b: ops.linear_forward(x, W, b), ops.linear_backward, x, W, b)


@given(d=distinct_dims(B=(1, 4), T=(1, 6), C=(2, 7)), seed=seeds)
def test_layernorm_gradcheck(d, seed):
    B, T, C = d["B"], d["T"], d["C"]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, C))
    gamma, beta = rng.standard_normal((2, C))
    check_pair(ops.layernorm_forward, ops.layernorm_backward, x, gamma, beta)


@pytest.mark.parametrize("name", ["relu", "gelu_new", "gelu", "tanh"])
@given(shape=st.tuples(dims, dims, dims), seed=seeds)
def test_activation_gradcheck(name, shape, seed):
    fwd, bwd = ops.get_activation(name)
    x = np.random.default_rng(seed).standard_normal(shape) * 2
    check_pair(fwd, bwd, x)


@given(d=distinct_dims(V=(2, 7), C=(1, 7), B=(1, 4), T=(1, 6)), seed=seeds)
def test_embedding_gradcheck_repeated_ids_accumulate(d, seed):
    V, C, B, T = d["V"], d["C"], d["B"], d["T"]
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, T))
    ids.flat[0] = ids.flat[-1]                       # at least one repeat whenever B*T > 1
    W = rng.standard_normal((V, C))
    check_pair(lambda W: ops.embedding_forward(ids, W), ops.embedding_backward, W)


def test_embedding_backward_sums_repeats_known_answer():
    W = np.zeros((3, 2))
    _, cache = ops.embedding_forward(np.array([1, 1, 2]), W)
    dW = ops.embedding_backward(np.array([[1.0, 2.0], [10.0, 20.0], [5.0, 5.0]]), cache)
    np.testing.assert_array_equal(dW, [[0, 0], [11, 22], [5, 5]])


def test_scatter_rows_adds_every_repeat_on_every_backend(xp, monkeypatch):
    """The embedding's scatter-add: NumPy's add.at, and the device path (a one-hot matrix
    product per block of positions: GPU atomics would change the last bits from run to run)
    on the strict backend and on CuPy. Same sums, repeated ids and untouched rows included,
    and the same bits on a second call."""
    from minilm.ops import embedding
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5, 23)
    ids[:4] = 4                                                     # a repeat across blocks
    rows = rng.standard_normal((23, 6))
    expected = np.zeros((7, 6))
    for i, v in enumerate(ids):                                     # the definition, row by row
        expected[v] += rows[i]
    # the whole (7, 23) one-hot at once; then over the 5 distinct ids, 2 positions a block
    for block_bytes in (embedding.ONEHOT_BLOCK_BYTES, 5 * 8 * 2):
        monkeypatch.setattr(embedding, "ONEHOT_BLOCK_BYTES", block_bytes)
        for mod in {np, minilm.strict, xp}:
            got = embedding.scatter_rows(mod.asarray(ids), mod.asarray(rows), 7)
            assert minilm.get_xp(got) is mod and got.shape == (7, 6)
            np.testing.assert_allclose(minilm.to_numpy(got), expected, rtol=1e-13, atol=1e-13)
            again = embedding.scatter_rows(mod.asarray(ids), mod.asarray(rows), 7)
            assert np.array_equal(minilm.to_numpy(again), minilm.to_numpy(got))
    assert not expected[5:].any() and len(set(ids.tolist())) == 5


@given(d=distinct_dims(B=(1, 4), T=(1, 6), K=(2, 7)), seed=seeds)
def test_masked_softmax_gradcheck(d, seed):
    B, T, K = d["B"], d["T"], d["K"]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, K))
    mask = rng.random((B, T, K)) > 0.3
    check_pair(lambda x: ops.softmax_forward(x, mask), ops.softmax_backward, x)


def test_softmax_known_answer_and_fully_masked_row():
    P, _ = ops.softmax_forward(np.log(np.array([[1.0, 2.0, 5.0], [3.0, 3.0, 3.0]])),
                               np.array([[True, True, True], [False, False, False]]))
    np.testing.assert_allclose(P, [[0.125, 0.25, 0.625], [0, 0, 0]], rtol=1e-15)
    assert np.isfinite(P).all()


def test_softmax_is_stable_for_huge_logits():
    P, _ = ops.softmax_forward(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(P, [[0.5, 0.5, 0.0]])


@given(shape=st.lists(dims, min_size=1, max_size=4), seed=seeds,
       layout=st.sampled_from(["contiguous", "transposed"]))
def test_row_sum_and_row_max_equal_numpy_reductions(shape, seed, layout):
    """The BLAS-backed row reductions agree with NumPy's own on any layout (views included)."""
    x = np.random.default_rng(seed).standard_normal(shape)
    if layout == "transposed":
        x = x.T                                           # a non-contiguous view
    np.testing.assert_allclose(ops.row_sum(x), x.sum(axis=-1, keepdims=True), rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(ops.row_max(x), x.max(axis=-1, keepdims=True))
    assert ops.row_sum(x.astype(np.float32)).dtype == np.float32


@given(d=distinct_dims(B=(1, 3), H=(1, 3), T=(1, 6), S=(1, 7), D=(1, 6)), seed=seeds)
def test_attention_gradcheck_with_padding_at_the_end(d, seed):
    B, H, T, S, D = d["B"], d["H"], d["T"], d["S"], d["D"]
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((B, H, T, D)), rng.standard_normal((B, H, S, D)), rng.standard_normal((B, H, S, D))
    lengths = rng.integers(1, S + 1, B)              # padding at the end of each row
    mask = (np.arange(S)[None, :] < lengths[:, None])[:, None, None, :]
    check_pair(lambda q, k, v: ops.attention_forward(q, k, v, mask), ops.attention_backward, q, k, v)


@given(T=st.integers(1, 6), seed=seeds)
def test_causal_attention_gradcheck(T, seed):
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((3, 2, 3, T, 4))
    mask = ops.causal_mask(np, T)
    check_pair(lambda q, k, v: ops.attention_forward(q, k, v, mask), ops.attention_backward, q, k, v)


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5),
                       st.integers(1, 4)),
       p=st.sampled_from([0.1, 0.5]), seed=seeds)
def test_attention_with_dropout_gradcheck(shape, p, seed):
    """Dropout on the attention probabilities, with a fixed mask: the forward draws from a
    fresh Generator with the same seed on every call, so every finite difference sees the
    same mask. Padding at the end of the keys, T != S most of the time."""
    B, H, T, S, D = shape
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((B, H, T, D)), rng.standard_normal((B, H, S, D)), rng.standard_normal((B, H, S, D))
    lengths = rng.integers(1, S + 1, B)
    mask = (np.arange(S)[None, :] < lengths[:, None])[:, None, None, :]
    fwd = lambda q, k, v: ops.attention_forward(q, k, v, mask, p, np.random.default_rng(seed + 1))
    scale = fwd(q, k, v)[1][-1]                     # the dropout cache: 0 or 1 / (1 - p) per entry
    assert set(np.unique(scale)) <= {0.0, 1 / (1 - p)}
    check_pair(fwd, ops.attention_backward, q, k, v)


def test_attention_dropout_changes_the_output_and_its_gradient():
    """The dropout mask really is used by both passes: the same q, k, v with two different
    masks give different outputs and different gradients, each of which checks out."""
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 2, 4, 3)), rng.standard_normal((2, 2, 5, 3)), rng.standard_normal((2, 2, 5, 3))
    outs, grads = [], []
    for s in (1, 2):
        fwd = lambda q, k, v, s=s: ops.attention_forward(q, k, v, None, 0.4, np.random.default_rng(s))
        out, cache = fwd(q, k, v)
        outs.append(out)
        grads.append(ops.attention_backward(np.ones_like(out), cache)[0])
        check_pair(fwd, ops.attention_backward, q, k, v)
    assert np.abs(outs[0] - outs[1]).max() > 1e-3 and np.abs(grads[0] - grads[1]).max() > 1e-3


def test_attention_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    B, H, T, S, D = 2, 3, 4, 5, 6
    q, k, v = rng.standard_normal((B, H, T, D)), rng.standard_normal((B, H, S, D)), rng.standard_normal((B, H, S, D))
    mask = rng.random((B, 1, T, S)) > 0.4
    mask[0, 0, 1] = False                            # one query sees nothing at all
    out, _ = ops.attention_forward(q, k, v, mask)
    ref = np.zeros((B, H, T, D))
    for b in range(B):
        for h in range(H):
            for t in range(T):
                keys = [s for s in range(S) if mask[b, 0, t, s]]
                if not keys:
                    continue                         # fully masked: zeros, never NaN
                scores = np.array([q[b, h, t] @ k[b, h, s] / math.sqrt(D) for s in keys])
                w = np.exp(scores - scores.max())
                w /= w.sum()
                ref[b, h, t] = sum(wi * v[b, h, s] for wi, s in zip(w, keys))
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-14)
    assert np.all(out[0, :, 1] == 0)


def test_dropout_gradcheck_with_a_fixed_mask():
    x = np.random.default_rng(1).standard_normal((3, 4, 5))
    fwd = lambda x: ops.dropout_forward(x, 0.3, np.random.default_rng(7))   # same mask every call
    check_pair(fwd, ops.dropout_backward, x)


def test_dropout_statistics_and_eval_identity():
    x = np.ones((200, 500))
    out, _ = ops.dropout_forward(x, 0.25, np.random.default_rng(0))
    assert abs((out == 0).mean() - 0.25) < 0.01
    assert abs(out.mean() - 1.0) < 0.02              # inverted dropout keeps the expectation
    same, cache = ops.dropout_forward(x, 0.25, None)  # rng=None: eval mode
    assert same is x and cache is None
    with pytest.raises(ValueError, match="dropout probability"):
        ops.dropout_forward(x, 1.0, np.random.default_rng(0))


@given(d=distinct_dims(V=(2, 6), N=(1, 7)), smoothing=st.sampled_from([0.0, 0.1]), seed=seeds)
def test_cross_entropy_gradcheck_with_ignore_index(d, smoothing, seed):
    N, V = d["N"], d["V"]
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((N, V)) * 3
    targets = rng.integers(0, V, N)
    targets[rng.random(N) < 0.3] = -100
    fwd = lambda z: cross_entropy_forward(z, targets, label_smoothing=smoothing)
    loss, cache = fwd(logits)
    dz = cross_entropy_backward(1.0, cache)
    from minilm.check import numerical_grad
    num = numerical_grad(lambda z: fwd(z)[0], logits)
    np.testing.assert_allclose(dz, num, rtol=1e-6, atol=1e-9)


def test_cross_entropy_known_answer_and_no_nan():
    logits = np.array([[0.0, math.log(3.0)], [5.0, 1.0]])
    loss, _ = cross_entropy_forward(logits, np.array([1, -100]))
    assert loss == pytest.approx(-math.log(3 / 4), rel=1e-15)
    big = np.array([[1e4, -1e4]])                    # log(softmax) would give log(0) = -inf
    loss, _ = cross_entropy_forward(big, np.array([1]))
    assert loss == pytest.approx(2e4)
    loss, cache = cross_entropy_forward(logits, np.array([-100, -100]))
    assert loss == 0.0 and np.all(cross_entropy_backward(1.0, cache) == 0)
    with pytest.raises(ValueError, match="targets"):
        cross_entropy_forward(logits, np.array([2, 0]))


def test_erf_is_exact_to_double_precision():
    x = np.concatenate([np.linspace(-8, 8, 4001), [0.0, 0.49999999, 0.5, 3.9999999, 4.0, 27.0]])
    ref = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(ops.erf(x), ref, rtol=2e-15, atol=1e-300)


def test_gelu_known_values():
    x = np.array([-1.0, 0.0, 0.5, 2.0])
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    tanh = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(ops.gelu_erf_forward(x)[0], exact, rtol=1e-15)
    np.testing.assert_allclose(ops.gelu_tanh_forward(x)[0], tanh, rtol=1e-15)


def test_gelu_new_in_many_row_blocks_matches_the_formula():
    """An array larger than one cache block (row_blocks cuts it in several): every block's
    output and cached derivative agree with the formula evaluated on the whole array."""
    x = np.random.default_rng(0).standard_normal((3001, 7, 24)) * 3   # 3001 x 7 rows, odd count
    assert len(minilm.backend.row_blocks(x.reshape(-1, 24))) > 10
    a = math.sqrt(2 / math.pi)
    t = np.tanh(a * (x + 0.044715 * x**3))
    dudx = a * (1 + 3 * 0.044715 * x**2)
    out, grad = ops.gelu_tanh_forward(x)
    np.testing.assert_allclose(out, 0.5 * x * (1 + t), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(grad, 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * dudx, rtol=1e-12, atol=1e-14)
    dout = np.random.default_rng(1).standard_normal(x.shape)
    np.testing.assert_array_equal(ops.gelu_tanh_backward(dout, grad), dout * grad)


@pytest.mark.parametrize("name", ["linear", "layernorm", "gelu_new", "gelu", "attention", "softmax"])
def test_float32_gradients_agree_with_float64(name):
    rng = np.random.default_rng(3)
    if name == "linear":
        args = [rng.standard_normal((4, 5, 6)), rng.standard_normal((6, 7)), rng.standard_normal(7)]
        fwd, bwd = ops.linear_forward, ops.linear_backward
    elif name == "layernorm":
        args = [rng.standard_normal((4, 5, 6)), rng.standard_normal(6), rng.standard_normal(6)]
        fwd, bwd = ops.layernorm_forward, ops.layernorm_backward
    elif name == "attention":
        args = [rng.standard_normal((2, 3, 5, 4)) for _ in range(3)]
        fwd = lambda q, k, v: ops.attention_forward(q, k, v, ops.causal_mask(np, 5))
        bwd = ops.attention_backward
    elif name == "softmax":
        args = [rng.standard_normal((4, 5, 6))]
        fwd, bwd = ops.softmax_forward, ops.softmax_backward
    else:
        args = [rng.standard_normal((4, 5, 6))]
        fwd, bwd = ops.get_activation(name)
    out64, c64 = fwd(*args)
    dout = rng.standard_normal(out64.shape)
    g64 = bwd(dout, c64)
    out32, c32 = fwd(*[a.astype(np.float32) for a in args])
    g32 = bwd(dout.astype(np.float32), c32)
    g64 = g64 if isinstance(g64, tuple) else (g64,)
    g32 = g32 if isinstance(g32, tuple) else (g32,)
    assert out32.dtype == np.float32
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32, "float32 in must stay float32 (no silent upcast)"
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("name", ["linear", "layernorm", "gelu_new", "gelu", "attention", "attention_dropout",
                                  "softmax", "embedding", "ce"])
def test_backend_parity_float32(xp, name):
    """The active backend's float32 forward and backward agree with a float64 NumPy reference
    (so the test means something even where NumPy is the only backend), and keep float32."""
    rng = np.random.default_rng(0)
    if name == "linear":
        host = [rng.standard_normal((3, 4, 5)), rng.standard_normal((5, 6)), rng.standard_normal(6)]
        fwd, bwd = ops.linear_forward, ops.linear_backward
    elif name == "layernorm":
        host = [rng.standard_normal((3, 4, 5)), rng.standard_normal(5), rng.standard_normal(5)]
        fwd, bwd = ops.layernorm_forward, ops.layernorm_backward
    elif name in ("attention", "attention_dropout"):
        host = [rng.standard_normal((2, 3, 4, 5)) for _ in range(3)]
        p = 0.25 if name == "attention_dropout" else 0.0
        keep = rng.random((2, 3, 4, 4)) >= p                   # one dropout mask for both precisions

        class FixedMask:                     # a Generator stand-in: the same mask in both precisions
            def __init__(self, mod):
                self.mod = mod

            def random(self, shape, dtype):  # dropout keeps entries where random() >= p
                return self.mod.asarray((~keep).astype(dtype))

        def fwd(q, k, v):
            mod = minilm.get_xp(q)
            return ops.attention_forward(q, k, v, ops.causal_mask(mod, 4), p, FixedMask(mod) if p else None)
        bwd = ops.attention_backward
    elif name == "softmax":
        host = [3 * rng.standard_normal((3, 4, 5))]
        fwd, bwd = ops.softmax_forward, ops.softmax_backward
    elif name == "embedding":
        ids = np.array([[0, 2, 2], [1, 0, 3]])
        host = [rng.standard_normal((4, 5))]
        fwd = lambda W: ops.embedding_forward(minilm.get_xp(W).asarray(ids), W)
        bwd = ops.embedding_backward
    elif name == "ce":
        t = np.array([1, -100, 3, 0])
        host = [rng.standard_normal((4, 5))]
        fwd = lambda z: cross_entropy_forward(z, minilm.get_xp(z).asarray(t), label_smoothing=0.1)
        bwd = lambda d, c: cross_entropy_backward(1.0, c)
    else:
        host = [rng.standard_normal((3, 4, 5))]
        fwd, bwd = ops.get_activation(name)

    def run(mod, dtype):
        args = [mod.asarray(a.astype(dtype)) for a in host]
        out, cache = fwd(*args)
        dout = None if name == "ce" else mod.asarray(dout_host.astype(dtype))
        grads = bwd(dout, cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return out, [g for g in grads if g is not None]

    dout_host = rng.standard_normal(np.shape(fwd(*host)[0]))
    ref_out, ref_grads = run(np, np.float64)                  # NumPy arrays: ops run on NumPy
    out32, grads32 = run(xp, np.float32)
    if name != "ce":
        assert out32.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads32), "float32 in must stay float32 (no silent upcast)"
    assert len(grads32) == len(ref_grads)
    for got, ref in zip([out32] + grads32, [ref_out] + ref_grads):
        got, ref = minilm.to_numpy(got).astype(np.float64), np.asarray(ref, np.float64)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 2e-5 * max(np.abs(ref).max(), 1e-3)       # float32 round-off


# -- known answers that a gradient check cannot see (it agrees with whatever the forward does) --

def test_causal_and_padding_masks_known_answers():
    np.testing.assert_array_equal(ops.causal_mask(np, 3), [[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    # a KV cache holding 2 earlier positions: query t sits at position 2 + t
    np.testing.assert_array_equal(ops.causal_mask(np, 2, 4), [[1, 1, 1, 0], [1, 1, 1, 1]])
    assert ops.causal_mask(np, 3).dtype == bool
    m = ops.padding_mask(np.array([[1, 1, 0], [1, 0, 0]]))
    assert m.shape == (2, 1, 1, 3) and m.dtype == bool
    np.testing.assert_array_equal(m[:, 0, 0], [[True, True, False], [True, False, False]])


def test_layernorm_forward_known_answer_and_default_eps():
    x = np.array([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]])       # mean 3, biased variance 3.5
    gamma, beta = np.array([1.0, 2.0, 0.5, -1.0]), np.array([0.0, 1.0, 0.0, 2.0])
    out, _ = ops.layernorm_forward(x, gamma, beta)
    ref0 = (x[0] - 3.0) / math.sqrt(3.5 + 1e-5) * gamma + beta
    np.testing.assert_allclose(out[0], ref0, rtol=1e-14)
    np.testing.assert_allclose(out[1], beta, atol=1e-12)             # a constant row: xhat = 0, no NaN
    out_eps, _ = ops.layernorm_forward(x, gamma, beta, eps=0.5)
    np.testing.assert_allclose(out_eps[0], (x[0] - 3.0) / math.sqrt(4.0) * gamma + beta, rtol=1e-14)


def test_linear_without_bias_returns_no_bias_gradient():
    rng = np.random.default_rng(0)
    x, W = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))
    out, cache = ops.linear_forward(x, W)
    np.testing.assert_allclose(out, x @ W, rtol=1e-14)
    dx, dW, db = ops.linear_backward(np.ones((2, 3, 5)), cache)
    assert db is None and dx.shape == x.shape and dW.shape == W.shape


def test_cross_entropy_with_one_counted_target():
    """The mean is over the counted targets: with one of them, the gradient is the whole
    softmax - onehot (smoothed) row, not half of it."""
    logits = np.array([[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]])
    targets = np.array([2, -100])
    for eps in (0.0, 0.2):
        loss, cache = cross_entropy_forward(logits, targets, label_smoothing=eps)
        p = np.exp(logits[0]) / np.exp(logits[0]).sum()
        q = np.full(3, eps / 3)
        q[2] += 1 - eps
        assert loss == pytest.approx(-(q * np.log(p)).sum(), rel=1e-14)
        dz = cross_entropy_backward(1.0, cache)
        np.testing.assert_allclose(dz, [p - q, [0, 0, 0]], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(cross_entropy_backward(3.0, cache), 3 * dz, rtol=1e-14)


def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown activation 'swish'; supported: \['gelu', 'gelu_new', "
                                         r"'gelu_pytorch_tanh', 'relu', 'tanh'\]"):
        ops.get_activation("swish")


def test_log_softmax_known_answer_and_huge_logits():
    x = np.log(np.array([[1.0, 2.0, 5.0], [3.0, 3.0, 3.0]]))
    np.testing.assert_allclose(ops.log_softmax(x), np.log([[0.125, 0.25, 0.625], [1 / 3, 1 / 3, 1 / 3]]),
                               rtol=1e-14)
    big = ops.log_softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(big, [[-math.log(2), -math.log(2), -2000 - math.log(2)]], rtol=1e-14,
                               atol=2e-13)                           # 1000 - (1000 + log 2): ulp(1000)
    x3 = np.random.default_rng(0).standard_normal((2, 3, 4))
    np.testing.assert_allclose(np.exp(ops.log_softmax(x3)).sum(-1), 1.0, rtol=1e-14)
    assert ops.log_softmax(x3.astype(np.float32)).dtype == np.float32


def test_attention_without_a_dropout_probability_does_not_drop():
    """dropout_p defaults to 0: passing a Generator alone changes nothing."""
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((3, 1, 2, 4, 3))
    plain, _ = ops.attention_forward(q, k, v)
    same, _ = ops.attention_forward(q, k, v, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(same, plain)
    dropped, _ = ops.attention_forward(q, k, v, dropout_p=0.5, rng=np.random.default_rng(1))
    assert np.abs(dropped - plain).max() > 1e-3
