"""The gradient checker checked: deliberately wrong backward passes must all be caught, and
minilm's own ops and layers must all pass. A checker that cannot fail is worthless."""
import numpy as np
import pytest

from minilm import ops
from minilm.check import gradcheck, numerical_grad
from minilm.layers import (CausalSelfAttention, Dropout, Embedding, FeedForward, LayerNorm, Linear,
                           MultiHeadAttention)
from minilm.losses import cross_entropy_backward, cross_entropy_forward
from minilm.models.gpt import GPTBlock, GPTConfig
from minilm.backend import asarray

F64 = "float64"


def linear_inputs(seed=0, scale=1.0, shape=(2, 3, 4), n_out=5):
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal(shape)
    W = scale * rng.standard_normal((shape[-1], n_out))
    b = scale * rng.standard_normal(n_out)
    return x, W, b


def failing(result):
    return [r[0] for r in result.rows if not r[3]]


# -- op pairs: wrong backwards ---------------------------------------------------------------

def test_right_linear_passes_and_says_what_it_checked():
    result = gradcheck((ops.linear_forward, ops.linear_backward), *linear_inputs())
    assert result.ok and bool(result), f"\n{result}"
    assert [r[0] for r in result.rows] == ["input 0", "input 1", "input 2"]
    assert [(r.checked, r.total) for r in result.rows] == [(24, 24), (20, 20), (5, 5)]
    assert all(r.scale > 0.1 for r in result.rows)
    table = str(result)
    for word in ("checked", "scale", "max abs err", "rel err", "24/24", "yes"):
        assert word in table


def test_inplace_scaled_upstream_gradient_is_caught():
    """`dout *= 2` changes the caller's array: the checker must not compute its numbers with it."""
    def bwd(dout, cache):
        dout *= 2
        return ops.linear_backward(dout, cache)
    result = gradcheck((ops.linear_forward, bwd), *linear_inputs())
    assert not result.ok
    assert "dout (upstream gradient)" in failing(result)
    assert {"input 0", "input 1", "input 2"} <= set(failing(result))        # and all three are 2x


def test_upstream_gradient_overwritten_after_use_is_caught():
    """Right gradients, but the caller's dout is destroyed: a residual branch would then get zeros."""
    def bwd(dout, cache):
        grads = ops.linear_backward(dout, cache)
        dout[...] = 0
        return grads
    result = gradcheck((ops.linear_forward, bwd), *linear_inputs())
    assert failing(result) == ["dout (upstream gradient)"]
    assert "wrote into the upstream gradient" in str(result)


def test_flattened_dx_is_a_clear_error():
    def bwd(dout, cache):
        dx, dW, db = ops.linear_backward(dout, cache)
        return dx.reshape(-1), dW, db
    with pytest.raises(ValueError, match=r"gradient for input 0 \(x\) has shape \(24,\), expected \(2, 3, 4\)"):
        gradcheck((ops.linear_forward, bwd), *linear_inputs())


def test_row_vector_bias_gradient_is_a_clear_error():
    def bwd(dout, cache):
        dx, dW, db = ops.linear_backward(dout, cache)
        return dx, dW, db[None, :]
    with pytest.raises(ValueError, match=r"input 2 \(b\) has shape \(1, 5\), expected \(5,\)"):
        gradcheck((ops.linear_forward, bwd), *linear_inputs())


def test_too_few_gradients_is_a_clear_error():
    def bwd(dout, cache):
        return ops.linear_backward(dout, cache)[0]
    with pytest.raises(ValueError, match=r"backward returned 1 gradient, expected 3 "
                                         r"\(one per array argument of forward: x, W, b\)"):
        gradcheck((ops.linear_forward, bwd), *linear_inputs())
    with pytest.raises(ValueError, match="returned no gradient for input 2"):
        gradcheck((ops.linear_forward, lambda d, c: ops.linear_backward(d, c)[:2] + (None,)), *linear_inputs())


def test_nothing_to_check_is_refused():
    ids = np.array([[0, 1, 2]])
    W = np.ones((3, 2))
    with pytest.raises(ValueError, match="nothing to check"):
        gradcheck((lambda ids: ops.embedding_forward(ids, W), ops.embedding_backward), ids)
    with pytest.raises(ValueError, match="nothing to check"):
        gradcheck((ops.linear_forward, ops.linear_backward), *linear_inputs(), check_inputs=False)
    with pytest.raises(ValueError, match="nothing to check"):
        gradcheck(Dropout(0.1), np.ones((2, 3)), check_inputs=False)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_doubled_dW_is_caught_at_any_input_scale(scale):
    def bwd(dout, cache):
        dx, dW, db = ops.linear_backward(dout, cache)
        return dx, 2 * dW, db
    inputs = linear_inputs(scale=scale)
    assert gradcheck((ops.linear_forward, ops.linear_backward), *inputs).ok   # no false alarm either
    result = gradcheck((ops.linear_forward, bwd), *inputs)
    assert failing(result) == ["input 1"], f"\n{result}"


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_doubled_gradient_is_caught_when_every_gradient_is_tiny_or_huge(scale):
    """No fixed absolute tolerance: the error floor moves with the gradients' own scale.
    A student's op pair out = x * x, whose gradient 2x dout is of the size of x."""
    x = scale * np.random.default_rng(1).standard_normal((3, 4))
    fwd = lambda x: (x * x, x)
    assert gradcheck((fwd, lambda d, x: 2 * x * d), x).ok
    assert not gradcheck((fwd, lambda d, x: 4 * x * d), x).ok


def test_transposed_weight_gradient_is_caught_with_square_shapes():
    """With W square, dout^T x has dW's shape: only the numbers can tell."""
    x, W, b = linear_inputs(shape=(2, 3, 4), n_out=4)

    def transposed_dW(dout, cache):
        x, W, _ = cache
        d2, x2 = dout.reshape(-1, 4), x.reshape(-1, 4)
        return (d2 @ W.T).reshape(x.shape), d2.T @ x2, d2.sum(axis=0)

    def untransposed_W(dout, cache):
        x, W, _ = cache
        d2, x2 = dout.reshape(-1, 4), x.reshape(-1, 4)
        return (d2 @ W).reshape(x.shape), x2.T @ d2, d2.sum(axis=0)
    assert failing(gradcheck((ops.linear_forward, transposed_dW), x, W, b)) == ["input 1"]
    assert failing(gradcheck((ops.linear_forward, untransposed_W), x, W, b)) == ["input 0"]


def test_single_wrong_entry_is_caught():
    def bwd(dout, cache):
        dx, dW, db = ops.linear_backward(dout, cache)
        dW = dW.copy()
        dW[2, 3] += 1e-3 * np.abs(dW).max()
        return dx, dW, db
    assert failing(gradcheck((ops.linear_forward, bwd), *linear_inputs())) == ["input 1"]


def test_missing_bias_gradient_is_caught():
    def bwd(dout, cache):
        dx, dW, db = ops.linear_backward(dout, cache)
        return dx, dW, np.zeros_like(db)
    assert failing(gradcheck((ops.linear_forward, bwd), *linear_inputs())) == ["input 2"]


def _layernorm_backward_without(path):
    def bwd(dout, cache):
        xhat, rstd, gamma = cache
        g = dout * gamma
        mean_g = g.mean(axis=-1, keepdims=True)
        mean_gx = (g * xhat).mean(axis=-1, keepdims=True)
        if path == "mean":
            dx = rstd * (g - xhat * mean_gx)
        else:
            dx = rstd * (g - mean_g)
        C = xhat.shape[-1]
        return dx, (dout * xhat).reshape(-1, C).sum(0), dout.reshape(-1, C).sum(0)
    return bwd


@pytest.mark.parametrize("path", ["mean", "variance"])
def test_layernorm_backward_missing_a_path_is_caught(path):
    rng = np.random.default_rng(2)
    x, gamma, beta = rng.standard_normal((2, 3, 5)), rng.standard_normal(5), rng.standard_normal(5)
    assert gradcheck((ops.layernorm_forward, ops.layernorm_backward), x, gamma, beta).ok
    result = gradcheck((ops.layernorm_forward, _layernorm_backward_without(path)), x, gamma, beta)
    assert failing(result) == ["input 0"], f"\n{result}"


def test_sampling_says_how_many_entries_were_checked():
    x, W, b = linear_inputs(shape=(4, 6, 7), n_out=9)
    result = gradcheck((ops.linear_forward, ops.linear_backward), x, W, b, max_elements=10)
    assert result.ok
    assert [(r.checked, r.total) for r in result.rows] == [(10, 168), (10, 63), (9, 9)]
    assert "10/168" in str(result) and "max_elements" in str(result)


def test_grads_for_float_arguments_only_and_trailing_none_are_accepted():
    """embedding_backward returns dW only (ids get none); linear_backward without a bias
    returns (dx, dW, None)."""
    ids = np.array([[0, 2, 2], [1, 0, 3]])
    W = np.random.default_rng(0).standard_normal((4, 5))
    assert gradcheck((ops.embedding_forward, ops.embedding_backward), ids, W).ok
    x, W, _ = linear_inputs()
    assert gradcheck((ops.linear_forward, ops.linear_backward), x, W).ok


def test_scalar_output_and_a_loss_backward():
    rng = np.random.default_rng(0)
    logits, targets = rng.standard_normal((5, 4)), np.array([0, 3, -100, 1, 1])
    fwd = lambda z: cross_entropy_forward(z, targets)
    bwd = lambda d, c: cross_entropy_backward(float(d), c)
    assert gradcheck((fwd, bwd), logits).ok
    assert not gradcheck((fwd, lambda d, c: -bwd(d, c)), logits).ok


# -- modules: wrong backwards ------------------------------------------------------------------

class OverwritingLinear(Linear):
    def backward(self, dout):
        cache = self._check_cache()
        dx, dW, db = ops.linear_backward(dout, cache)
        self.weight.grad[...] = dW                         # wrong: = instead of +=
        self.bias.grad += db
        return dx


class ReplacingLinear(Linear):
    def backward(self, dout):
        cache = self._check_cache()
        dx, dW, db = ops.linear_backward(dout, cache)
        self.weight.grad = dW                              # wrong: a new array each time
        self.bias.grad += db
        return dx


@pytest.mark.parametrize("cls", [OverwritingLinear, ReplacingLinear])
def test_module_overwriting_grad_is_caught(cls):
    rng = np.random.default_rng(0)
    layer = cls(4, 3, dtype=F64, rng=rng)
    result = gradcheck(layer, rng.standard_normal((2, 4)))
    assert failing(result) == ["weight"]
    assert "must add into .grad" in str(result) and "1.00x" in str(result)


def test_module_writing_into_dout_is_caught():
    class Doubling(Linear):
        def backward(self, dout):
            dout *= 2
            return super().backward(dout)
    rng = np.random.default_rng(0)
    result = gradcheck(Doubling(4, 3, dtype=F64, rng=rng), rng.standard_normal((2, 4)))
    assert set(failing(result)) == {"dout (upstream gradient)", "input 0", "weight", "bias"}


def test_module_doubled_dW_is_caught_at_small_and_large_scale():
    class Doubled(Linear):
        def backward(self, dout):
            dx, dW, db = ops.linear_backward(dout, self._check_cache())
            self.weight.grad += 2 * dW
            self.bias.grad += db
            return dx
    rng = np.random.default_rng(0)
    for scale in (1e-6, 1e6):
        for cls, ok in ((Linear, True), (Doubled, False)):
            layer = cls(4, 3, dtype=F64, rng=rng, std=scale)
            layer.bias.data[:] = asarray(scale * rng.standard_normal(3))
            result = gradcheck(layer, scale * rng.standard_normal((2, 5, 4)))
            assert result.ok == ok, f"scale {scale}, {cls.__name__}\n{result}"
            if not ok:
                assert failing(result) == ["weight"]


def test_module_flat_dx_and_row_bias_grad_are_clear_errors():
    class FlatDx(Linear):
        def backward(self, dout):
            return super().backward(dout).reshape(-1)

    class RowBias(Linear):
        def backward(self, dout):
            cache = self._check_cache()
            dx, dW, db = ops.linear_backward(dout, cache)
            self.weight.grad += dW
            self.bias.grad = self.bias.grad + db[None]
            return dx
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4))
    with pytest.raises(ValueError, match=r"gradient for input 0 \(x\) has shape \(8,\), expected \(2, 4\)"):
        gradcheck(FlatDx(4, 3, dtype=F64, rng=rng), x)
    with pytest.raises(ValueError, match=r"parameter bias has shape \(1, 3\), expected \(3,\)"):
        gradcheck(RowBias(4, 3, dtype=F64, rng=rng), x)


def test_module_returning_too_few_input_gradients_is_a_clear_error():
    class OnlyDx(MultiHeadAttention):
        def backward(self, dout):
            return super().backward(dout)[0]
    rng = np.random.default_rng(0)
    x, mem = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4))
    with pytest.raises(ValueError, match=r"backward returned 1 gradient, expected 2 .*: x, kv\)"):
        gradcheck(OnlyDx(4, 2, dtype=F64, rng=rng), x, mem)
    assert gradcheck(MultiHeadAttention(4, 2, dtype=F64, rng=rng), x, mem).ok


def test_module_wrong_layernorm_backward_is_caught():
    class NoMeanPath(LayerNorm):
        def backward(self, dout):
            dx, dgamma, dbeta = _layernorm_backward_without("mean")(dout, self._check_cache())
            self.weight.grad += dgamma
            self.bias.grad += dbeta
            return dx
    rng = np.random.default_rng(0)
    ln = NoMeanPath(5, dtype=F64)
    ln.weight.data[:] = asarray(rng.standard_normal(5))
    assert failing(gradcheck(ln, rng.standard_normal((2, 3, 5)))) == ["input 0"]


def test_module_with_a_loss_is_checked_through_backward_without_arguments():
    class TinyClassifier(Linear):
        def forward(self, x, labels=None):
            logits = super().forward(x)
            loss, self.ce_cache = cross_entropy_forward(logits, labels)
            return type("Out", (), {"loss": loss, "logits": logits})()

        def backward(self):
            return super().backward(cross_entropy_backward(1.0, self.ce_cache))

    class OverwritingClassifier(TinyClassifier):
        def backward(self):
            self.zero_grad()                               # wrong: throws away what was there
            return super().backward()
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    assert gradcheck(TinyClassifier(4, 3, dtype=F64, rng=rng, std=1.0), x, labels=labels).ok
    result = gradcheck(OverwritingClassifier(4, 3, dtype=F64, rng=rng, std=1.0), x, labels=labels)
    assert failing(result) == ["weight", "bias"]


def test_module_with_ids_only_and_no_gradient_returned():
    rng = np.random.default_rng(0)
    emb = Embedding(5, 3, F64, rng, 0.5)
    result = gradcheck(emb, rng.integers(0, 5, (2, 4)))
    assert result.ok and [r[0] for r in result.rows] == ["weight"]


# -- the right ones pass -----------------------------------------------------------------------

def _right_ops():
    rng = np.random.default_rng(5)
    x3 = rng.standard_normal((2, 3, 4))
    q, k, v = rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 2, 5, 4))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)[:, None, None, :]
    targets = np.array([1, -100, 0, 3, 2, 2])
    keep = rng.random((2, 3, 4)) > 0.3
    cases = {
        "linear": ((ops.linear_forward, ops.linear_backward), (x3, rng.standard_normal((4, 5)), rng.standard_normal(5))),
        "layernorm": ((ops.layernorm_forward, ops.layernorm_backward),
                      (x3, rng.standard_normal(4), rng.standard_normal(4))),
        "softmax": ((lambda x: ops.softmax_forward(x, keep), ops.softmax_backward), (x3,)),
        "attention": ((lambda q, k, v: ops.attention_forward(q, k, v, mask), ops.attention_backward), (q, k, v)),
        "attention+dropout": ((lambda q, k, v: ops.attention_forward(q, k, v, mask, 0.3, np.random.default_rng(3)),
                               ops.attention_backward), (q, k, v)),
        "dropout": ((lambda x: ops.dropout_forward(x, 0.5, np.random.default_rng(1)), ops.dropout_backward), (x3,)),
        "embedding": ((lambda W: ops.embedding_forward(np.array([[0, 1, 1], [3, 0, 2]]), W), ops.embedding_backward),
                      (rng.standard_normal((4, 3)),)),
        "cross_entropy": ((lambda z: cross_entropy_forward(z, targets, label_smoothing=0.1),
                           lambda d, c: cross_entropy_backward(float(d), c)), (3 * rng.standard_normal((6, 4)),)),
    }
    for name in ("relu", "gelu", "gelu_new", "tanh"):
        cases[name] = (ops.get_activation(name), (2 * x3,))
    return cases


@pytest.mark.parametrize("name", sorted(_right_ops()))
def test_minilm_ops_pass(name):
    pair, inputs = _right_ops()[name]
    result = gradcheck(pair, *inputs)
    assert result.ok, f"\n{result}"


def _right_layers():
    rng = np.random.default_rng(6)
    cfg = GPTConfig(vocab_size=7, n_positions=8, n_embd=6, n_layer=1, n_head=3, initializer_range=0.4,
                    resid_pdrop=0, attn_pdrop=0, embd_pdrop=0)
    ln = LayerNorm(5, dtype=F64)
    ln.weight.data[:] = asarray(rng.standard_normal(5))
    ln.bias.data[:] = asarray(rng.standard_normal(5))
    key_mask = ops.padding_mask(np.array([[1, 1, 1, 1], [1, 1, 0, 0]]))
    return {
        "Linear": (Linear(5, 3, dtype=F64, rng=rng, std=0.5), (rng.standard_normal((2, 4, 5)),), {}),
        "LayerNorm": (ln, (rng.standard_normal((2, 4, 5)),), {}),
        "FeedForward": (FeedForward(6, 10, "gelu", dtype=F64, rng=rng, std=0.5), (rng.standard_normal((2, 4, 6)),), {}),
        "CausalSelfAttention": (CausalSelfAttention(6, 2, dtype=F64, rng=rng, std=0.5, proj_std=0.5),
                                (rng.standard_normal((2, 4, 6)),), {"key_mask": key_mask}),
        "MultiHeadAttention": (MultiHeadAttention(6, 3, dtype=F64, rng=rng, std=0.5),
                               (rng.standard_normal((2, 3, 6)), rng.standard_normal((2, 4, 6))), {"key_mask": key_mask}),
        "GPTBlock": (GPTBlock(cfg, np.float64, rng, None), (rng.standard_normal((2, 4, 6)),), {"key_mask": key_mask}),
    }


@pytest.mark.parametrize("name", sorted(_right_layers()))
def test_minilm_layers_pass(name):
    layer, inputs, kwargs = _right_layers()[name]
    result = gradcheck(layer, *inputs, **kwargs)
    assert result.ok, f"\n{result}"
    assert not any(p.grad.any() for p in layer.parameters()), "gradcheck leaves .grad zeroed"


def test_gradient_zero_in_exact_arithmetic_passes():
    """The key bias of attention cannot change a softmax: its gradient is round-off on both sides."""
    rng = np.random.default_rng(0)
    mha = MultiHeadAttention(8, 2, dtype=F64, rng=rng, std=0.5)
    mha.k.bias.data[:] = asarray(rng.standard_normal(8))
    result = gradcheck(mha, rng.standard_normal((2, 3, 8)))
    key_bias = dict((r[0], r) for r in result.rows)[mha.names[1] + ".bias"]
    assert result.ok and key_bias.scale < 1e-8 and key_bias[2] == 0.0, f"\n{result}"


def test_numerical_grad_divides_by_the_step_actually_taken():
    """At |x| = 3e7, x + 1e-6 is rounded to a multiple of 2^-28: dividing by 2e-6 would be
    0.1% off; dividing by the step taken gives the slope of 2 a exactly."""
    x = np.array([3e7 + 0.1])
    up = float(x[0] + 1e-6) - x[0]
    assert abs(up - 1e-6) > 1e-3 * 1e-6
    num = numerical_grad(lambda a: 2 * a, x, np.ones(1))
    np.testing.assert_allclose(num, [2.0], rtol=1e-12)
