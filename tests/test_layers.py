"""Layers and blocks: float64 gradient checks of inputs and every parameter, hypothesis shapes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.check import gradcheck
from minilm.layers import (CausalSelfAttention, FeedForward, LayerNorm, Linear,
                           MultiHeadAttention)
from minilm.models.gpt import GPTBlock, GPTConfig
from minilm.ops import padding_mask

from conftest import attention_dims, distinct_dims

seeds = st.integers(0, 2**31 - 1)
F64 = "float64"


def ok(result):
    assert result.ok, f"\n{result}"


def pad_mask(rng, B, T):
    """(B, 1, 1, T) key mask with padding at the end of each row (at least one real token)."""
    lengths = rng.integers(1, T + 1, B)
    return padding_mask((np.arange(T)[None] < lengths[:, None]).astype(np.int64))


@given(d=distinct_dims(B=(1, 4), T=(1, 6), Cin=(1, 7), Cout=(1, 7)), seed=seeds)
def test_linear_layer(d, seed):
    rng = np.random.default_rng(seed)
    B, T, Cin, Cout = d["B"], d["T"], d["Cin"], d["Cout"]
    ok(gradcheck(Linear(Cin, Cout, dtype=F64, rng=rng, std=0.5), rng.standard_normal((B, T, Cin))))


@given(d=distinct_dims(B=(1, 4), T=(1, 6), C=(2, 8)), seed=seeds)
def test_layernorm_layer(d, seed):
    rng = np.random.default_rng(seed)
    B, T, C = d["B"], d["T"], d["C"]
    ln = LayerNorm(C, dtype=F64)
    ln.weight.data[:] = rng.standard_normal(C)
    ln.bias.data[:] = rng.standard_normal(C)
    ok(gradcheck(ln, rng.standard_normal((B, T, C))))


@pytest.mark.parametrize("act", ["relu", "gelu_new", "gelu"])
@given(d=distinct_dims(B=(1, 3), T=(1, 5), C=(2, 6), F=(3, 9)), seed=seeds)
def test_feedforward(act, d, seed):
    rng = np.random.default_rng(seed)
    B, T, C, F = d["B"], d["T"], d["C"], d["F"]
    ff = FeedForward(C, F, act, dtype=F64, rng=rng, std=0.5)
    ok(gradcheck(ff, rng.standard_normal((B, T, C))))


@given(d=attention_dims(), seed=seeds)
def test_causal_self_attention_with_padding(d, seed):
    rng = np.random.default_rng(seed)
    B, T, H, C = d["B"], d["T"], d["H"], d["C"]
    attn = CausalSelfAttention(C, H, dtype=F64, rng=rng, std=0.5, proj_std=0.5)
    ok(gradcheck(attn, rng.standard_normal((B, T, C)), key_mask=pad_mask(rng, B, T)))


@given(d=attention_dims(cross=True), seed=seeds)
def test_cross_attention_source_and_target_lengths_differ(d, seed):
    rng = np.random.default_rng(seed)
    B, T, S, H, C = d["B"], d["T"], d["S"], d["H"], d["C"]
    mha = MultiHeadAttention(C, H, dtype=F64, rng=rng, std=0.5)
    x, mem = rng.standard_normal((B, T, C)), rng.standard_normal((B, S, C))
    ok(gradcheck(mha, x, mem, key_mask=pad_mask(rng, B, S)))


def test_shape_strategies_really_vary():
    """A narrow strategy shows here: draw many times and look at the spread (the old
    assume()-filtered strategies kept only B = 1 and T in {4, 5})."""
    seen = {"attention": [], "linear": []}

    @settings(max_examples=200, database=None, derandomize=True)
    @given(a=attention_dims(cross=True), lin=distinct_dims(B=(1, 4), T=(1, 6), Cin=(1, 7), Cout=(1, 7)))
    def draw(a, lin):
        seen["attention"].append(a)
        seen["linear"].append(lin)
    draw()
    att, lin = seen["attention"], seen["linear"]
    for dims in (att, lin):
        for d in dims:
            assert len(set(d[k] for k in d if k != "C")) == len(d) - ("C" in d), d   # all distinct
        assert len({d["B"] for d in dims}) >= 3 and len({d["T"] for d in dims}) >= 4
        assert sum(d["B"] > 1 for d in dims) >= len(dims) / 4          # batches, not just B = 1
    assert len({d["H"] for d in att}) == 3 and len({d["D"] for d in att}) == 3
    assert len({d["S"] for d in att}) >= 5 and all(d["T"] != d["S"] for d in att)
    assert sum(d["S"] > d["T"] for d in att) >= len(att) / 4 and sum(d["S"] < d["T"] for d in att) >= len(att) / 4
    assert len({d["Cin"] for d in lin}) >= 5 and len({d["Cout"] for d in lin}) >= 5


def test_causal_mha_equals_gpt_attention_layout():
    """MultiHeadAttention(causal=True) with q/k/v cut from GPT-2's fused c_attn gives the same output."""
    rng = np.random.default_rng(0)
    C, H = 6, 2
    gpt = CausalSelfAttention(C, H, dtype=F64, rng=rng, std=0.5, proj_std=0.5)
    mha = MultiHeadAttention(C, H, dtype=F64, rng=rng, causal=True)
    W, b = gpt.c_attn.weight.data, gpt.c_attn.bias.data
    for i, lin in enumerate((mha.q, mha.k, mha.v)):
        lin.weight.data[:] = W[:, i * C:(i + 1) * C]
        lin.bias.data[:] = b[i * C:(i + 1) * C]
    mha.o.weight.data[:] = gpt.c_proj.weight.data
    mha.o.bias.data[:] = gpt.c_proj.bias.data
    x = rng.standard_normal((2, 5, C))
    np.testing.assert_allclose(mha.forward(x), gpt.forward(x), rtol=1e-13, atol=1e-14)


@given(B=st.integers(1, 3), T=st.integers(1, 7), seed=seeds)
def test_gpt_block(B, T, seed):
    rng = np.random.default_rng(seed)
    cfg = GPTConfig(vocab_size=7, n_positions=8, n_embd=6, n_layer=2, n_head=3, initializer_range=0.4,
                    resid_pdrop=0, attn_pdrop=0, embd_pdrop=0)
    block = GPTBlock(cfg, np.float64, rng, None)
    ok(gradcheck(block, rng.standard_normal((B, T, 6)), key_mask=pad_mask(rng, B, T)))


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match="before forward"):
        Linear(3, 4).backward(np.ones((2, 4), np.float32))


def test_gradcheck_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(Linear(3, 4), np.ones((2, 3), np.float32))


def test_gradcheck_catches_a_wrong_backward():
    """A checker that cannot fail is worthless: break a backward on purpose."""
    class Broken(Linear):
        def backward(self, dout):
            return 1.01 * super().backward(dout)
    rng = np.random.default_rng(0)
    assert not gradcheck(Broken(3, 4, dtype=F64, rng=rng), rng.standard_normal((2, 3))).ok


def test_parameter_grads_accumulate():
    rng = np.random.default_rng(0)
    lin = Linear(3, 2, dtype=F64, rng=rng)
    x, d = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    lin.forward(x)
    lin.backward(d)
    once = lin.weight.grad.copy()
    lin.forward(x)
    lin.backward(d)
    np.testing.assert_allclose(lin.weight.grad, 2 * once)
    lin.zero_grad()
    assert not lin.weight.grad.any()


def test_per_example_gradients_sum_to_the_batch_gradient():
    """Linear, Embedding and LayerNorm keep per-example grads whose sum is the batch grad."""
    from minilm.layers import Embedding
    rng = np.random.default_rng(0)
    emb, ln, lin = Embedding(7, 5, F64, rng, 0.5), LayerNorm(5, dtype=F64), Linear(5, 3, dtype=F64, rng=rng)
    ln.weight.data[:] = rng.standard_normal(5)
    mods = (emb, ln, lin)
    for m in mods:
        m.per_example_grads()
    ids = rng.integers(0, 7, (4, 6))
    out = lin.forward(ln.forward(emb.forward(ids)))
    dout = rng.standard_normal(out.shape)
    emb.backward(ln.backward(lin.backward(dout)))
    for m in mods:
        for name, p in m.named_parameters():
            assert p.grad_sample.shape == (4,) + p.shape
            np.testing.assert_allclose(p.grad_sample.sum(axis=0), p.grad, rtol=1e-12, atol=1e-12)
    # example 0's per-example gradient equals the gradient of example 0 run alone
    ref = {}
    for m in mods:
        for name, p in m.named_parameters():
            ref[(id(m), name)] = p.grad_sample[0]
    for m in mods:
        m.per_example_grads(False)
        m.zero_grad()
    lin.forward(ln.forward(emb.forward(ids[:1])))
    emb.backward(ln.backward(lin.backward(dout[:1])))
    for m in mods:
        for name, p in m.named_parameters():
            np.testing.assert_allclose(ref[(id(m), name)], p.grad, rtol=1e-12, atol=1e-14)
