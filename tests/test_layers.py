"""Layers and blocks: float64 gradient checks of inputs and every parameter, hypothesis shapes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.check import gradcheck
from minilm.layers import (CausalSelfAttention, Dropout, Embedding, FeedForward, LayerNorm, Linear,
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


def test_kv_cache_forward_equals_the_full_causal_forward():
    """GPT-2 attention fed a 3-token prompt, then one token at a time, through a key/value
    cache gives what the full causal forward gives, and the cache holds every k and v."""
    rng = np.random.default_rng(0)
    B, T, C, H = 2, 5, 6, 3
    attn = CausalSelfAttention(C, H, dtype=F64, rng=rng, std=0.5, proj_std=0.5)
    attn.c_attn.bias.data[:] = rng.standard_normal(3 * C)
    attn.c_proj.bias.data[:] = rng.standard_normal(C)
    x = rng.standard_normal((B, T, C))
    full = attn.forward(x)
    past_k, past_v = np.zeros((B, H, T + 2, C // H)), np.zeros((B, H, T + 2, C // H))
    outs = [attn.forward_cached(x[:, :3], past_k, past_v, 0)]
    outs += [attn.forward_cached(x[:, t:t + 1], past_k, past_v, t) for t in range(3, T)]
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full, rtol=1e-12, atol=1e-13)
    qkv = (x @ attn.c_attn.weight.data + attn.c_attn.bias.data).reshape(B, T, 3, H, C // H)
    np.testing.assert_allclose(past_k[:, :, :T], qkv[:, :, 1].transpose(0, 2, 1, 3), rtol=1e-13)
    np.testing.assert_allclose(past_v[:, :, :T], qkv[:, :, 2].transpose(0, 2, 1, 3), rtol=1e-13)
    assert not past_k[:, :, T:].any() and not past_v[:, :, T:].any()      # nothing past the end
    assert attn.c_attn.cache is None and attn.c_proj.cache is None       # inference keeps no cache


def test_state_dict_round_trip_and_load_errors():
    rng = np.random.default_rng(0)
    src = FeedForward(4, 6, "relu", dtype=F64, rng=rng, std=0.5)
    dst = FeedForward(4, 6, "relu", dtype="float32", rng=np.random.default_rng(1), std=0.5)
    assert src.num_parameters() == 4 * 6 + 6 + 6 * 4 + 4
    sd = src.state_dict()
    assert sorted(sd) == ["c_fc.bias", "c_fc.weight", "c_proj.bias", "c_proj.weight"]
    sd["c_fc.weight"][0, 0] += 1.0                                     # a copy, not the parameter
    assert src.fc.weight.data[0, 0] != sd["c_fc.weight"][0, 0]
    sd = src.state_dict()
    assert dst.load_state_dict(sd) == ([], [])
    for (name, p), q in zip(dst.named_parameters(), src.parameters()):
        assert p.data.dtype == np.float32, name                        # cast to the layer's dtype
        np.testing.assert_allclose(p.data, q.data, rtol=1e-6)
    before = {n: p.data.copy() for n, p in dst.named_parameters()}
    partial = {k: v + 1 for k, v in sd.items() if k != "c_proj.bias"}
    partial["extra"] = np.zeros(3)
    with pytest.raises(KeyError, match=r"missing keys \['c_proj.bias'\], unexpected keys \['extra'\]"):
        dst.load_state_dict(partial)
    assert all(np.array_equal(p.data, before[n]) for n, p in dst.named_parameters())   # nothing loaded
    assert dst.load_state_dict(partial, strict=False) == (["c_proj.bias"], ["extra"])
    np.testing.assert_allclose(dst.fc.bias.data, sd["c_fc.bias"] + 1, rtol=1e-6)
    np.testing.assert_array_equal(dst.proj.bias.data, before["c_proj.bias"])
    bad = dict(sd, **{"c_fc.bias": np.zeros(5)})
    with pytest.raises(ValueError, match=r"shape mismatch for 'c_fc.bias': checkpoint has \(5,\), "
                                         r"model expects \(6,\)"):
        dst.load_state_dict(bad)
    assert repr(src.fc.weight) == "Parameter('', shape=(4, 6), dtype=float64)"


def test_layer_defaults_and_construction():
    """What the constructors promise: init std, zero biases, LayerNorm gain 1 and eps 1e-5,
    no bias when asked, clear errors for heads that do not divide the width."""
    lin = Linear(300, 200, rng=np.random.default_rng(0))
    assert lin.weight.data.dtype == np.float32 and abs(lin.weight.data.std() - 0.02) < 1e-3
    assert not lin.bias.data.any() and lin.bias.grad.shape == (200,)
    nob = Linear(3, 2, bias=False, dtype=F64)
    assert nob.bias is None and [n for n, _ in nob.named_parameters()] == ["weight"]
    x = np.random.default_rng(1).standard_normal((4, 3))
    np.testing.assert_allclose(nob.forward(x), x @ nob.weight.data)
    ln = LayerNorm(4, dtype=F64)
    assert ln.eps == 1e-5 and np.all(ln.weight.data == 1) and not ln.bias.data.any()
    assert [n for n, _ in ln.named_parameters()] == ["weight", "bias"]
    x = np.array([[1.0, 2.0, 3.0, 6.0]])
    ref = (x - 3.0) / np.sqrt(3.5 + 1e-5)                              # biased variance 3.5
    np.testing.assert_allclose(ln.forward(x), ref, rtol=1e-14)
    emb = Embedding(50, 40, rng=np.random.default_rng(0))
    assert emb.weight.data.shape == (50, 40) and abs(emb.weight.data.std() - 0.02) < 2e-3
    with pytest.raises(ValueError, match="divisible"):
        CausalSelfAttention(6, 4)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(6, 4)
    mha = MultiHeadAttention(6, 2, dtype=F64, rng=np.random.default_rng(0), std=0.5)
    assert [n for n, _ in mha.named_parameters()] == [f"{p}.{w}" for p in ("query", "key", "value", "out_proj")
                                                      for w in ("weight", "bias")]
    assert mha.n_head == 2 and not mha.causal and mha.q.weight.data.shape == (6, 6)
    assert abs(MultiHeadAttention(64, 2, rng=np.random.default_rng(0), std=0.3).k.weight.data.std() - 0.3) < 0.02
    gpt = CausalSelfAttention(6, 3, dtype=F64, rng=np.random.default_rng(0), std=0.5, proj_std=0.1)
    assert [n for n, _ in gpt.named_parameters()] == ["c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias"]
    assert gpt.c_attn.weight.data.shape == (6, 18) and gpt.c_proj.weight.data.std() < 0.2
    ff = FeedForward(4, 8, "gelu", dtype=F64, rng=np.random.default_rng(0), names=("fc1", "fc2"))
    assert [n for n, _ in ff.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert ff.fc.weight.data.shape == (4, 8) and ff.proj.weight.data.shape == (8, 4)


def test_dropout_layer_in_training_and_eval():
    gen = np.random.default_rng(0)
    drop = Dropout(0.5, lambda: gen)
    x = np.ones((50, 40))
    out = drop.forward(x)
    assert 0.4 < (out == 0).mean() < 0.6 and set(np.unique(out)) == {0.0, 2.0}
    np.testing.assert_array_equal(drop.backward(np.ones_like(x)), out)    # the same mask, scaled
    drop.eval()
    assert drop.forward(x) is x and drop.backward(x) is x
    drop.train()
    assert Dropout(0.0, lambda: gen).forward(x) is x and Dropout(0.5).forward(x) is x   # p = 0, no rng
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\), got 1.0"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(-0.1)
