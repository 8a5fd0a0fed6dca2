"""Layers and blocks: float64 gradient checks of inputs and every parameter, hypothesis shapes."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.backend import asarray, get_xp, to_numpy
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


def assert_close(actual, desired, **kw):
    """np.testing.assert_allclose on host copies: layer outputs live on the active backend."""
    np.testing.assert_allclose(to_numpy(actual), to_numpy(desired), **kw)


def assert_equal(actual, desired):
    np.testing.assert_array_equal(to_numpy(actual), to_numpy(desired))


def array_equal(a, b):
    return np.array_equal(to_numpy(a), to_numpy(b))


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
    ln.weight.data[:] = asarray(rng.standard_normal(C))
    ln.bias.data[:] = asarray(rng.standard_normal(C))
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


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_cached_cross_attention_equals_forward_with_shared_kv_heads(n_kv_head):
    """project_memory + forward_memory (decoding) give forward(x, memory) exactly, also when
    the key/value heads are shared by groups of query heads."""
    rng = np.random.default_rng(0)
    B, T, S, C = 2, 3, 5, 8
    mha = MultiHeadAttention(C, 4, dtype=F64, rng=rng, std=0.5, n_kv_head=n_kv_head).eval()
    x, mem = rng.standard_normal((B, T, C)), rng.standard_normal((B, S, C))
    mask = pad_mask(rng, B, S)
    want = to_numpy(mha.forward(asarray(x), asarray(mem), key_mask=asarray(mask)))
    k, v = mha.project_memory(asarray(mem))
    assert k.shape == v.shape == (B, 4, S, C // 4)
    got = to_numpy(mha.forward_memory(asarray(x), k, v, key_mask=asarray(mask)))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


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
    x = asarray(rng.standard_normal((2, 5, C)))
    assert_close(mha.forward(x), gpt.forward(x), rtol=1e-13, atol=1e-14)


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
    x, d = asarray(rng.standard_normal((4, 3))), asarray(rng.standard_normal((4, 2)))
    lin.forward(x)
    lin.backward(d)
    once = lin.weight.grad.copy()
    lin.forward(x)
    lin.backward(d)
    assert_close(lin.weight.grad, 2 * once)
    lin.zero_grad()
    assert not lin.weight.grad.any()


def test_per_example_gradients_sum_to_the_batch_gradient():
    """Linear, Embedding and LayerNorm keep per-example grads whose sum is the batch grad."""
    from minilm.layers import Embedding
    rng = np.random.default_rng(0)
    emb, ln, lin = Embedding(7, 5, F64, rng, 0.5), LayerNorm(5, dtype=F64), Linear(5, 3, dtype=F64, rng=rng)
    ln.weight.data[:] = asarray(rng.standard_normal(5))
    mods = (emb, ln, lin)
    for m in mods:
        m.per_example_grads()
    ids = rng.integers(0, 7, (4, 6))
    out = lin.forward(ln.forward(emb.forward(ids)))
    dout = asarray(rng.standard_normal(out.shape))
    emb.backward(ln.backward(lin.backward(dout)))
    for m in mods:
        for name, p in m.named_parameters():
            assert p.grad_sample.shape == (4,) + p.shape
            assert_close(p.grad_sample.sum(axis=0), p.grad, rtol=1e-12, atol=1e-12)
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
            assert_close(ref[(id(m), name)], p.grad, rtol=1e-12, atol=1e-14)


def test_kv_cache_forward_equals_the_full_causal_forward():
    """GPT-2 attention fed a 3-token prompt, then one token at a time, through a key/value
    cache gives what the full causal forward gives, and the cache holds every k and v."""
    rng = np.random.default_rng(0)
    B, T, C, H = 2, 7, 6, 3
    attn = CausalSelfAttention(C, H, dtype=F64, rng=rng, std=0.5, proj_std=0.5)
    attn.c_attn.bias.data[:] = asarray(rng.standard_normal(3 * C))
    attn.c_proj.bias.data[:] = asarray(rng.standard_normal(C))
    x = asarray(rng.standard_normal((B, T, C)))
    full = attn.forward(x)
    past_k, past_v = asarray(np.zeros((B, H, T + 2, C // H))), asarray(np.zeros((B, H, T + 2, C // H)))
    outs = [attn.forward_cached(x[:, :3], past_k, past_v, 0)]                 # the prompt
    outs.append(attn.forward_cached(x[:, 3:5], past_k, past_v, 3))           # two new tokens at once
    outs += [attn.forward_cached(x[:, t:t + 1], past_k, past_v, t) for t in range(5, T)]
    assert_close(np.concatenate([to_numpy(o) for o in outs], axis=1), full, rtol=1e-12, atol=1e-13)
    qkv = (x @ attn.c_attn.weight.data + attn.c_attn.bias.data).reshape(B, T, 3, H, C // H)
    assert_close(past_k[:, :, :T], qkv[:, :, 1].transpose(0, 2, 1, 3), rtol=1e-13)
    assert_close(past_v[:, :, :T], qkv[:, :, 2].transpose(0, 2, 1, 3), rtol=1e-13)
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
        assert_close(p.data, q.data, rtol=1e-6)
    before = {n: p.data.copy() for n, p in dst.named_parameters()}
    partial = {k: v + 1 for k, v in sd.items() if k != "c_proj.bias"}
    partial["extra"] = np.zeros(3)
    with pytest.raises(KeyError, match=r"missing keys \['c_proj.bias'\], unexpected keys \['extra'\]"):
        dst.load_state_dict(partial)
    assert all(array_equal(p.data, before[n]) for n, p in dst.named_parameters())   # nothing loaded
    assert dst.load_state_dict(partial, strict=False) == (["c_proj.bias"], ["extra"])
    assert_close(dst.fc.bias.data, sd["c_fc.bias"] + 1, rtol=1e-6)
    assert_equal(dst.proj.bias.data, before["c_proj.bias"])
    with pytest.raises(KeyError, match=r"state_dict does not match FeedForward: missing keys \['c_fc.bias'\], "
                                       r"unexpected keys \[\]"):
        dst.load_state_dict({k: v for k, v in sd.items() if k != "c_fc.bias"})      # missing only
    middle = {k: v + 2 for k, v in sd.items() if k != "c_fc.bias"}                 # a hole in the middle
    assert dst.load_state_dict(middle, strict=False) == (["c_fc.bias"], [])
    assert_close(dst.proj.weight.data, sd["c_proj.weight"] + 2, rtol=1e-6)   # later ones load
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
    assert_close(nob.forward(asarray(x)), x @ to_numpy(nob.weight.data))
    ln = LayerNorm(4, dtype=F64)
    assert ln.eps == 1e-5 and (ln.weight.data == 1).all() and not ln.bias.data.any()
    assert [n for n, _ in ln.named_parameters()] == ["weight", "bias"]
    x = np.array([[1.0, 2.0, 3.0, 6.0]])
    ref = (x - 3.0) / np.sqrt(3.5 + 1e-5)                              # biased variance 3.5
    assert_close(ln.forward(asarray(x)), ref, rtol=1e-14)
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
    assert_equal(drop.backward(np.ones_like(x)), out)    # the same mask, scaled
    drop.eval()
    assert drop.forward(x) is x and drop.backward(x) is x
    drop.train()
    assert Dropout(0.0, lambda: gen).forward(x) is x and Dropout(0.5).forward(x) is x   # p = 0, no rng
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\), got 1.0"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(-0.1)


def test_attention_layers_respect_padding_and_causality():
    """Masks are invisible to a gradient check (it agrees with whatever the forward does), so
    check what they mean: a padded row's real positions give what the row without its
    padding gives, and a causal layer's position t does not see later positions."""
    rng = np.random.default_rng(0)
    B, T, S, C = 2, 5, 4, 6
    gpt = CausalSelfAttention(C, 3, dtype=F64, rng=rng, std=0.5, proj_std=0.5)
    mha = MultiHeadAttention(C, 2, dtype=F64, rng=rng, std=0.5)
    causal = MultiHeadAttention(C, 2, dtype=F64, rng=rng, std=0.5, causal=True)
    x, mem = asarray(rng.standard_normal((B, T, C))), asarray(rng.standard_normal((B, S, C)))
    lengths = [T, 3]
    key_mask = padding_mask(asarray((np.arange(T)[None] < np.array(lengths)[:, None]).astype(np.int64)))
    for layer in (gpt, causal, mha):
        full = layer.forward(x, key_mask=key_mask)
        for b, L in enumerate(lengths):
            alone = layer.forward(x[b:b + 1, :L])
            assert_close(full[b, :L], alone[0], rtol=1e-12, atol=1e-13)
    later = x.copy()
    later[:, 3:] += 1.0
    for layer, sees_the_future in ((gpt, False), (causal, False), (mha, True)):
        moved = abs(layer.forward(later)[:, :3] - layer.forward(x)[:, :3]).max()
        assert (moved > 1e-3) == sees_the_future, type(layer).__name__
    # causal with S > T: the queries are the last T of the S positions (a decoder cache)
    seq = asarray(rng.standard_normal((B, 6, C)))
    assert_close(causal.forward(seq[:, -2:], seq), causal.forward(seq)[:, -2:], rtol=1e-12, atol=1e-13)
    # a key mask in the middle: hiding key 1 is deleting position 1 (no positions inside the layer)
    hide = np.ones((B, 1, 1, T), bool)
    hide[..., 1] = False
    hide = asarray(hide)
    keep = [0, 2, 3, 4]
    for layer in (gpt, causal, mha):
        assert_close(layer.forward(x, key_mask=hide)[:, keep], layer.forward(x[:, keep]),
                                   rtol=1e-12, atol=1e-13)
    src_lengths = [2, S]
    src_mask = padding_mask(asarray((np.arange(S)[None] < np.array(src_lengths)[:, None]).astype(np.int64)))
    full = mha.forward(x, mem, key_mask=src_mask)                      # cross-attention, T != S
    for b, L in enumerate(src_lengths):
        assert_close(full[b], mha.forward(x[b:b + 1], mem[b:b + 1, :L])[0], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ["gpt", "mha"])
def test_attention_dropout_in_training_only(kind):
    gen = get_xp().random.default_rng(0)                 # dropout draws on the layer's backend
    rng = np.random.default_rng(1)
    x = asarray(rng.standard_normal((2, 4, 6)))
    if kind == "gpt":
        layer = CausalSelfAttention(6, 2, attn_pdrop=0.5, dtype=F64, rng=rng, std=0.5, dropout_rng=lambda: gen)
        resid = CausalSelfAttention(6, 2, resid_pdrop=0.5, dtype=F64, rng=np.random.default_rng(1), std=0.5,
                                    dropout_rng=lambda: gen)
    else:
        layer = MultiHeadAttention(6, 2, dropout=0.5, dtype=F64, rng=rng, std=0.5, dropout_rng=lambda: gen)
        resid = None
    layer.eval()
    quiet = layer.forward(x)
    assert_equal(layer.forward(x), quiet)             # eval: deterministic
    layer.train()
    noisy = layer.forward(x)
    assert abs(noisy - quiet).max() > 1e-3                             # training: probabilities dropped
    dx = layer.backward(get_xp(noisy).ones_like(noisy))
    assert np.isfinite(to_numpy(dx)).all() and dx.shape == x.shape
    if resid is not None:
        out = resid.forward(x)
        resid.eval()
        assert abs(out - resid.forward(x)).max() > 1e-3 and (out == 0).any()      # whole outputs dropped
    no_rng = CausalSelfAttention(6, 2, attn_pdrop=0.5, dtype=F64, rng=np.random.default_rng(1)) if kind == "gpt" \
        else MultiHeadAttention(6, 2, dropout=0.5, dtype=F64, rng=np.random.default_rng(1))
    assert_equal(no_rng.forward(x), no_rng.eval().forward(x))   # no Generator: no dropout


def test_float32_layers_keep_float32_through_backward():
    rng = np.random.default_rng(0)
    x = asarray(rng.standard_normal((2, 4, 6)).astype(np.float32))
    key_mask = padding_mask(asarray(np.array([[1, 1, 1, 1], [1, 1, 0, 0]])))
    for layer in (CausalSelfAttention(6, 2, rng=rng), MultiHeadAttention(6, 3, rng=rng), FeedForward(6, 8, rng=rng),
                  LayerNorm(6), Linear(6, 5, rng=rng)):
        kw = {"key_mask": key_mask} if isinstance(layer, (CausalSelfAttention, MultiHeadAttention)) else {}
        out = layer.forward(x, **kw)
        dx = layer.backward(get_xp(out).ones_like(out))
        assert out.dtype == dx.dtype == np.float32, type(layer).__name__
        assert all(p.data.dtype == p.grad.dtype == np.float32 for p in layer.parameters())


def test_module_bookkeeping():
    """train/eval reach every child, a shared Parameter is listed once, backward without a
    forward names the layer, per-example gradients accumulate and zero_grad clears them."""
    rng = np.random.default_rng(0)
    attn = CausalSelfAttention(6, 2, attn_pdrop=0.1, resid_pdrop=0.1, dtype=F64, rng=rng)
    assert attn.training and all(m.training for m in attn.modules())
    attn.eval()
    assert not any(m.training for m in attn.modules()) and attn.resid_dropout.training is False
    attn.train()
    assert all(m.training is True for m in attn.modules())

    class Tied(FeedForward):
        def __init__(self):
            super().__init__(4, 4, "relu", dtype=F64, rng=np.random.default_rng(0))
            self.proj.weight = self.fc.weight                          # one Parameter, two uses
    tied = Tied()
    assert [n for n, _ in tied.named_parameters()] == ["c_fc.weight", "c_fc.bias", "c_proj.bias"]
    assert tied.num_parameters() == 16 + 4 + 4

    with pytest.raises(RuntimeError, match=r"^LayerNorm.backward called before forward \(or twice after one "
                                           r"forward\): run forward first$"):
        LayerNorm(3).backward(np.ones((2, 3), np.float32))
    lin = Linear(3, 2, dtype=F64, rng=rng)
    lin.forward(asarray(np.ones((2, 3))))
    lin.backward(asarray(np.ones((2, 2))))
    with pytest.raises(RuntimeError, match="Linear.backward called before forward"):
        lin.backward(asarray(np.ones((2, 2))))                          # twice after one forward

    ln, emb = LayerNorm(3, dtype=F64), Embedding(5, 3, F64, rng, 0.5)
    ids, x = np.array([[1, 2], [2, 2]]), asarray(rng.standard_normal((2, 2, 3)))
    for m in (lin, ln, emb):
        m.per_example_grads()
        assert all(p.grad_sample == 0 for p in m.parameters())
    once = {}
    for rep in range(2):
        lin.forward(x[..., :3])
        lin.backward(asarray(np.ones((2, 2, 2))))
        ln.forward(x)
        ln.backward(x)
        emb.forward(ids)
        emb.backward(x)
        for m in (lin, ln, emb):
            for name, p in m.named_parameters():
                assert p.grad_sample.shape == (2,) + p.shape
                if rep == 0:
                    once[(id(m), name)] = p.grad_sample.copy()
                else:
                    assert_close(p.grad_sample, 2 * once[(id(m), name)], rtol=1e-14)
    for m in (lin, ln, emb):
        m.zero_grad()
        assert all(p.grad_sample == 0 and not p.grad.any() for p in m.parameters())
        m.per_example_grads(False)
        assert not any(hasattr(p, "grad_sample") for p in m.parameters())


def test_constructors_pass_their_arguments_on():
    """dtype, rng, std, proj_std, activation and eps reach the sub-layers and the forward."""
    def weights(layer):
        return [p.data for p in layer.parameters()]
    for make in (lambda r: FeedForward(6, 8, rng=r),
                 lambda r: CausalSelfAttention(6, 2, rng=r),
                 lambda r: MultiHeadAttention(6, 2, rng=r)):
        a, b, c = make(np.random.default_rng(5)), make(np.random.default_rng(5)), make(np.random.default_rng(6))
        assert all(array_equal(u, v) for u, v in zip(weights(a), weights(b)))        # the rng is used
        assert all(u.dtype == np.float32 for u in weights(a))                           # default dtype
        w = [u for u in weights(a) if u.ndim == 2]
        assert all(not array_equal(u, v) for u, v in zip(w, [u for u in weights(c) if u.ndim == 2]))
    big = np.random.default_rng(0)
    ff = FeedForward(200, 300, rng=big)
    assert abs(ff.fc.weight.data.std() - 0.02) < 2e-3 and abs(ff.proj.weight.data.std() - 0.02) < 2e-3
    ff = FeedForward(200, 300, dtype=F64, rng=big, std=0.1, proj_std=0.3)
    assert abs(ff.fc.weight.data.std() - 0.1) < 5e-3 and abs(ff.proj.weight.data.std() - 0.3) < 0.015
    assert ff.fc.weight.data.dtype == ff.proj.bias.data.dtype == np.float64
    gpt = CausalSelfAttention(120, 2, dtype=F64, rng=big, proj_std=0.3)
    assert abs(gpt.c_attn.weight.data.std() - 0.02) < 2e-3 and abs(gpt.c_proj.weight.data.std() - 0.3) < 0.015
    wide = CausalSelfAttention(120, 2, rng=big, std=0.3)
    assert abs(wide.c_attn.weight.data.std() - 0.3) < 0.015 and abs(wide.c_proj.weight.data.std() - 0.02) < 2e-3
    mha = MultiHeadAttention(120, 2, rng=big)
    assert all(abs(lin.weight.data.std() - 0.02) < 2e-3 for lin in (mha.q, mha.k, mha.v, mha.o))
    e5, e6 = Embedding(5, 3, rng=np.random.default_rng(5)), Embedding(5, 3, rng=np.random.default_rng(6))
    assert not array_equal(e5.weight.data, e6.weight.data)                          # the rng is used
    assert gpt.c_attn.bias.data.dtype == np.float64
    with pytest.raises(ValueError, match=r"n_embd \(6\) must be divisible by n_head \(4\)"):
        CausalSelfAttention(6, 4)
    with pytest.raises(ValueError, match=r"d_model \(6\) must be divisible by the number of heads \(4\)"):
        MultiHeadAttention(6, 4)
    # the default activation is GPT-2's gelu_new (tanh form)
    ff = FeedForward(3, 4, dtype=F64, rng=np.random.default_rng(0), std=0.5)
    x = np.random.default_rng(1).standard_normal((2, 3))
    h = x @ to_numpy(ff.fc.weight.data) + to_numpy(ff.fc.bias.data)
    h = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
    assert_close(ff.forward(asarray(x)), h @ to_numpy(ff.proj.weight.data) + to_numpy(ff.proj.bias.data),
                 rtol=1e-13)
    # LayerNorm's eps reaches the formula; a layer built without an rng is reproducible
    ln = LayerNorm(4, eps=0.5, dtype=F64)
    x = np.array([[1.0, 2.0, 3.0, 6.0]])
    assert_close(ln.forward(asarray(x)), (x - 3.0) / 2.0, rtol=1e-14)
    assert LayerNorm(4).weight.data.dtype == np.float32
    assert array_equal(Linear(4, 3).weight.data, Linear(4, 3).weight.data)
    assert Linear(4, 3).weight.data.std() > 0


def test_multi_head_attention_without_output_projection_and_defaults():
    rng = np.random.default_rng(0)
    bare = MultiHeadAttention(6, 2, dtype=F64, rng=rng, std=0.5, names=("query", "key", "value", None))
    assert bare.o is None and [n for n, _ in bare.named_parameters()] == [
        f"{p}.{w}" for p in ("query", "key", "value") for w in ("weight", "bias")]
    x, mem = asarray(rng.standard_normal((2, 3, 6))), asarray(rng.standard_normal((2, 4, 6)))
    ok(gradcheck(bare, x))
    ok(gradcheck(bare, x, mem))
    wide = MultiHeadAttention(64, 2, rng=np.random.default_rng(0), std=0.3)
    for lin in (wide.q, wide.k, wide.v, wide.o):
        assert abs(lin.weight.data.std() - 0.3) < 0.02
    gen = get_xp().random.default_rng(0)
    for layer in (MultiHeadAttention(6, 2, dtype=F64, rng=rng, dropout_rng=lambda: gen),
                  CausalSelfAttention(6, 2, dtype=F64, rng=rng, dropout_rng=lambda: gen)):
        out = layer.forward(x)                                        # training mode, default p = 0
        assert_equal(out, layer.eval().forward(x))


def test_per_example_gradients_keep_float32():
    rng = np.random.default_rng(0)
    lin, ln, emb = Linear(3, 2, rng=rng), LayerNorm(3), Embedding(5, 3, rng=rng)
    for m in (lin, ln, emb):
        m.per_example_grads()
    ids = np.array([[1, 2, 2, 4], [0, 1, 3, 3]])
    out = lin.forward(ln.forward(emb.forward(ids)))
    emb.backward(ln.backward(lin.backward(get_xp(out).ones_like(out))))
    for m in (lin, ln, emb):
        assert all(p.grad_sample.dtype == np.float32 for p in m.parameters()), type(m).__name__
