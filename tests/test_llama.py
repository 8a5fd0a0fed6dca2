"""Llama / Qwen3 ops: float64 gradient checks on hypothesis-drawn shapes, known answers, bad input."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.backend import asarray, to_numpy
from minilm.check import gradcheck
from minilm.ops.gqa import check_gqa_heads, repeat_kv_backward, repeat_kv_forward
from minilm.ops.rmsnorm import rmsnorm_backward, rmsnorm_forward
from minilm.ops.rope import interleaved_to_half, rope_backward, rope_forward, rope_tables
from minilm.ops.swiglu import silu_backward, silu_forward, swiglu_backward, swiglu_forward

from conftest import distinct_dims

seeds = st.integers(0, 2**31 - 1)


def check_pair(fwd, bwd, *inputs, **kw):
    result = gradcheck((fwd, bwd), *inputs, **kw)
    assert result.ok, f"\n{result}"


# -- RMSNorm ----------------------------------------------------------------------------------

@settings(deadline=None, max_examples=20)
@given(d=distinct_dims(B=(1, 3), T=(1, 5), C=(2, 7)), seed=seeds)
def test_rmsnorm_gradcheck(d, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((d["B"], d["T"], d["C"]))
    w = rng.standard_normal(d["C"])
    check_pair(rmsnorm_forward, rmsnorm_backward, x, w)


@settings(deadline=None, max_examples=10)
@given(d=distinct_dims(B=(1, 3), T=(1, 4), H=(1, 5), D=(2, 6)), seed=seeds)
def test_per_head_rmsnorm_gradcheck(d, seed):
    """Qwen3's q_norm / k_norm: one (D,) gain shared by every head, normalised per head."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((d["B"], d["T"], d["H"], d["D"]))
    w = rng.standard_normal(d["D"])
    check_pair(rmsnorm_forward, rmsnorm_backward, x, w)


def test_rmsnorm_known_answer_and_float16():
    out, _ = rmsnorm_forward(np.array([[3.0, 4.0]]), np.array([1.0, 2.0]), eps=0.0)
    np.testing.assert_allclose(out, [[3 / np.sqrt(12.5), 8 / np.sqrt(12.5)]], rtol=1e-15)
    big = np.full((1, 4), 1000.0, dtype=np.float16)          # x^2 overflows in float16
    out, _ = rmsnorm_forward(big, np.ones(4, dtype=np.float16))
    assert out.dtype == np.float16 and np.isfinite(out).all()
    np.testing.assert_allclose(out.astype(np.float64), 1.0, rtol=1e-3)


# -- RoPE -------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=20)
@given(d=distinct_dims(B=(1, 3), H=(1, 4), T=(1, 5)), half=st.integers(1, 4),
       theta=st.sampled_from([10000.0, 500000.0, 100.0]), seed=seeds)
def test_rope_gradcheck(d, half, theta, seed):
    rng = np.random.default_rng(seed)
    D = 2 * half
    x = rng.standard_normal((d["B"], d["H"], d["T"], D))
    pos = rng.integers(0, 50, (d["B"], d["T"]))
    cos, sin = rope_tables(pos, D, theta)
    check_pair(lambda x: rope_forward(x, cos, sin), rope_backward, x)


def rope_interleaved_reference(x, pos, theta):
    """RoFormer's layout, written with a loop: pair (x_2i, x_2i+1) turns by pos * theta^(-2i/D)."""
    out = np.empty_like(x)
    D = x.shape[-1]
    for t, p in enumerate(pos):
        for i in range(D // 2):
            a = p * theta ** (-2 * i / D)
            x0, x1 = x[..., t, 2 * i], x[..., t, 2 * i + 1]
            out[..., t, 2 * i] = x0 * np.cos(a) - x1 * np.sin(a)
            out[..., t, 2 * i + 1] = x0 * np.sin(a) + x1 * np.cos(a)
    return out


def test_rope_interleaved_layout_is_a_permutation_of_rotate_half():
    rng = np.random.default_rng(0)
    D, T = 8, 5
    x = rng.standard_normal((2, 3, T, D))
    pos = np.array([0, 3, 4, 9, 20])
    perm = interleaved_to_half(D, np)
    cos, sin = rope_tables(pos, D, 1000.0)
    half, _ = rope_forward(x[..., perm], cos, sin)
    unperm = np.argsort(perm)
    np.testing.assert_allclose(half[..., unperm], rope_interleaved_reference(x, pos, 1000.0), rtol=1e-12, atol=1e-14)


def test_rope_scores_depend_on_relative_position_only():
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((2, 1, 1, 1, 6))
    def score(m, n):
        cq, sq = rope_tables(np.array([m]), 6)
        ck, sk = rope_tables(np.array([n]), 6)
        return float((rope_forward(q, cq, sq)[0] * rope_forward(k, ck, sk)[0]).sum())
    assert score(7, 3) == pytest.approx(score(104, 100), rel=1e-12)
    x = rng.standard_normal((1, 2, 3, 6))
    cos, sin = rope_tables(np.array([[5, 6, 7]]), 6)
    out, cache = rope_forward(x, cos, sin)
    np.testing.assert_allclose(rope_backward(out, cache), x, rtol=1e-12, atol=1e-14)   # R^T R = I


def test_rope_odd_head_dim_is_an_error():
    with pytest.raises(ValueError, match="head_dim must be even"):
        rope_tables(np.arange(3), 5)
    with pytest.raises(ValueError, match="head_dim must be even"):
        rope_forward(np.zeros((1, 1, 3, 5)), np.zeros((3, 5)), np.zeros((3, 5)))


# -- SiLU / SwiGLU ----------------------------------------------------------------------------

@settings(deadline=None, max_examples=20)
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 5)), seed=seeds)
def test_silu_gradcheck(shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    check_pair(silu_forward, silu_backward, x)


@settings(deadline=None, max_examples=20)
@given(d=distinct_dims(B=(1, 3), T=(1, 4), C=(2, 6), F=(2, 8)), seed=seeds)
def test_swiglu_gradcheck(d, seed):
    rng = np.random.default_rng(seed)
    C, F = d["C"], d["F"]
    x = rng.standard_normal((d["B"], d["T"], C))
    Wg, Wu = rng.standard_normal((2, C, F))
    Wd = rng.standard_normal((F, C))
    check_pair(swiglu_forward, swiglu_backward, x, Wg, Wu, Wd)


def test_swiglu_known_answer():
    x = np.array([[1.0, -2.0]])
    Wg, Wu, Wd = np.eye(2), 2 * np.eye(2), np.eye(2)
    out, _ = swiglu_forward(x, Wg, Wu, Wd)
    silu = x / (1 + np.exp(-x))
    np.testing.assert_allclose(out, silu * 2 * x, rtol=1e-15)


# -- Grouped-query attention ------------------------------------------------------------------

@settings(deadline=None, max_examples=20)
@given(d=distinct_dims(B=(1, 3), Hkv=(1, 4), T=(1, 5), D=(1, 6)), n_rep=st.integers(1, 4), seed=seeds)
def test_repeat_kv_gradcheck(d, n_rep, seed):
    k = np.random.default_rng(seed).standard_normal((d["B"], d["Hkv"], d["T"], d["D"]))
    check_pair(lambda k: repeat_kv_forward(k, n_rep), repeat_kv_backward, k)


def test_repeat_kv_layout_and_group_sum():
    k = np.arange(2 * 3 * 1 * 1, dtype=float).reshape(2, 3, 1, 1)
    out, cache = repeat_kv_forward(k, 2)
    assert out.shape == (2, 6, 1, 1)
    np.testing.assert_array_equal(out[0, :, 0, 0], [0, 0, 1, 1, 2, 2])      # head j reads j // n_rep
    dk = repeat_kv_backward(np.arange(12, dtype=float).reshape(2, 6, 1, 1), cache)
    np.testing.assert_array_equal(dk[0, :, 0, 0], [0 + 1, 2 + 3, 4 + 5])


def test_heads_not_divisible_by_kv_heads_is_an_error():
    assert check_gqa_heads(8, 2) == 4
    with pytest.raises(ValueError, match=r"num_attention_heads \(6\) must be a multiple of num_key_value_heads \(4\)"):
        check_gqa_heads(6, 4)


# -- Models -----------------------------------------------------------------------------------

from minilm.models import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM  # noqa: E402

TINY = dict(vocab_size=11, hidden_size=8, intermediate_size=12, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=16, initializer_range=0.3)


def tiny_models():
    return [LlamaForCausalLM(LlamaConfig(**TINY, num_key_value_heads=2), dtype="float64"),
            LlamaForCausalLM(LlamaConfig(**TINY, tie_word_embeddings=True, rope_theta=50.0), dtype="float64"),
            Qwen3ForCausalLM(Qwen3Config(**TINY, num_key_value_heads=1, head_dim=6), dtype="float64")]


@pytest.mark.parametrize("i", range(3))
def test_model_gradcheck_with_padding_and_labels(i):
    model = tiny_models()[i]
    rng = np.random.default_rng(i)
    ids = rng.integers(0, 11, (2, 5))
    mask = np.ones((2, 5), dtype=int)
    mask[1, 3:] = 0                                        # right padding
    labels = np.where(mask == 1, ids, -100)
    result = gradcheck(model, ids, attention_mask=mask, labels=labels)
    assert result.ok, f"\n{result}"


def test_model_all_ignored_labels_give_zero_loss_and_parameter_names():
    model = tiny_models()[2]
    out = model(np.array([[1, 2, 3]]), labels=np.full((1, 3), -100))
    assert out.loss == 0.0
    model.zero_grad()
    model.backward()
    assert all(not p.grad.any() for p in model.parameters())
    names = [n for n, _ in model.named_parameters()]
    assert "model.layers.1.self_attn.q_norm.weight" in names and "lm_head.weight" in names
    assert "model.norm.weight" in names and "model.layers.0.mlp.gate_proj.weight" in names
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (8, 6)     # H_kv * head_dim


@pytest.mark.parametrize("i", range(3))
def test_generate_with_and_without_cache_agree(i):
    model = tiny_models()[i]
    ids = np.random.default_rng(i).integers(0, 11, (2, 3))
    cache = model.init_kv_cache(2, 7)
    assert cache[0][0].shape == (2, model.config.num_key_value_heads, 7, model.config.head_dim)
    np.testing.assert_array_equal(model.generate(ids, 4), model.generate(ids, 4, use_cache=False))


def test_save_and_load_round_trip(tmp_path):
    for model in tiny_models():
        model.save_pretrained(tmp_path / "m")
        back = type(model).from_pretrained(tmp_path / "m", dtype="float64")
        ids = np.array([[1, 2, 3, 4]])
        np.testing.assert_array_equal(to_numpy(back(ids).logits), to_numpy(model(ids).logits))


def test_bad_configs_and_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)"):
        LlamaConfig(**TINY, num_key_value_heads=3)
    with pytest.raises(ValueError, match="head_dim must be even"):
        Qwen3Config(**TINY, num_key_value_heads=2, head_dim=5)
    model = tiny_models()[0]
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=16"):
        model(np.zeros((1, 17), dtype=int))
    with pytest.raises(ValueError, match="exceeds"):
        model.generate(np.zeros((1, 10), dtype=int), 7)
    tiny_models()[2].save_pretrained(tmp_path / "q")
    with pytest.raises(ValueError, match="holds a 'qwen3' checkpoint, but this model reads 'llama'"):
        LlamaForCausalLM.from_pretrained(tmp_path / "q")


def test_one_attention_layer_and_one_block_for_every_model():
    """Llama's attention is the shared MultiHeadAttention (options: GQA, head_dim, RoPE, q/k
    norm), its layer the shared PreLNBlock; options that do not fit are clear errors."""
    from minilm.layers import MultiHeadAttention, PreLNBlock
    from minilm.ops import rope_tables as tables
    model = tiny_models()[2]                                   # Qwen3: H 4, H_kv 1, D 6
    layer = model.model.layers[0]
    assert isinstance(layer, PreLNBlock) and isinstance(layer.self_attn, MultiHeadAttention)
    attn = layer.self_attn
    assert (attn.n_head, attn.n_kv_head, attn.head_dim, attn.n_rep) == (4, 1, 6, 4)
    assert [n for n, _ in attn.named_children()] == ["q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"]
    x = np.random.default_rng(0).standard_normal((1, 3, 8))
    with pytest.raises(ValueError, match="rotary: pass rope"):
        attn.forward(asarray(x))
    with pytest.raises(ValueError, match="grouped-query"):
        attn.prune_heads([0])
    with pytest.raises(ValueError, match="fused=True is GPT-2's c_attn"):
        MultiHeadAttention(8, 4, names=("c_attn", "c_proj"), fused=True, n_kv_head=2)
    plain = MultiHeadAttention(8, 2, dtype="float64")
    with pytest.raises(ValueError, match="rotary=False"):
        plain.forward(asarray(x), rope=tables(np.arange(3)[None], 4))
    # grouped-query attention with RoPE on its own, against a loop over query heads that reads
    # key/value head h // n_rep
    gqa = MultiHeadAttention(8, 4, dtype="float64", rng=np.random.default_rng(1), std=0.5, causal=True,
                             n_kv_head=2, head_dim=4, bias=False, rotary=True)
    cos, sin = tables(np.arange(3)[None], 4)
    out = to_numpy(gqa.forward(asarray(x), rope=(asarray(cos), asarray(sin))))    # the reference on the host
    W = {n: to_numpy(getattr(gqa, n).weight.data) for n in ("q", "k", "v", "o")}
    q = rope_forward((x @ W["q"]).reshape(1, 3, 4, 4).transpose(0, 2, 1, 3), cos, sin)[0]
    k = rope_forward((x @ W["k"]).reshape(1, 3, 2, 4).transpose(0, 2, 1, 3), cos, sin)[0]
    v = (x @ W["v"]).reshape(1, 3, 2, 4).transpose(0, 2, 1, 3)
    heads = []
    for h in range(4):
        s = q[0, h] @ k[0, h // 2].T / 2.0 + np.triu(np.full((3, 3), -np.inf), 1)
        p = np.exp(s - s.max(-1, keepdims=True))
        heads.append((p / p.sum(-1, keepdims=True)) @ v[0, h // 2])
    np.testing.assert_allclose(out[0], np.concatenate(heads, -1) @ W["o"], rtol=1e-12, atol=1e-14)
    result = gradcheck(gqa, x, rope=(asarray(cos), asarray(sin)))     # and its backward
    assert result.ok, f"\n{result}"


# -- Against transformers (fixtures: tests/fixtures/make_llama_fixtures.py) ---------------------

import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CASES = {"llama_gqa": LlamaForCausalLM, "llama_mha_tied": LlamaForCausalLM, "qwen3_headdim": Qwen3ForCausalLM}


def max_rel(a, b):
    a, b = to_numpy(a), to_numpy(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_loss_and_every_gradient_match_transformers(case):
    folder = os.path.join(FIXTURES, case)
    model = CASES[case].from_pretrained(folder, dtype="float64")
    inp, ref = np.load(os.path.join(folder, "inputs.npz")), np.load(os.path.join(folder, "outputs.npz"))
    grads = np.load(os.path.join(folder, "grads.npz"))
    out = model(inp["input_ids"], attention_mask=inp["attention_mask"], labels=inp["labels"])
    assert max_rel(out.logits, ref["logits"]) < 1e-10
    assert abs(out.loss - float(ref["loss"])) < 1e-10 * abs(float(ref["loss"]))
    model.zero_grad()
    model.backward()
    params = dict(model.named_parameters())
    assert set(grads.files) - {"lm_head.weight"} == set(params) - {"lm_head.weight"}
    for name in grads.files:
        if name == "lm_head.weight" and name not in params:
            continue                                         # tied: its gradient is in embed_tokens'
        mine = LlamaForCausalLM._transposed(name, params[name].grad)
        assert max_rel(mine, grads[name]) < 1e-10, name


@pytest.mark.parametrize("case", sorted(CASES))
def test_greedy_generation_matches_transformers_with_and_without_cache(case):
    folder = os.path.join(FIXTURES, case)
    model = CASES[case].from_pretrained(folder, dtype="float64")
    inp, ref = np.load(os.path.join(folder, "inputs.npz")), np.load(os.path.join(folder, "outputs.npz"))
    np.testing.assert_array_equal(model.generate(inp["prompt"], 6), ref["generated"])
    np.testing.assert_array_equal(model.generate(inp["prompt"], 6, use_cache=False), ref["generated_no_cache"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_what_minilm_saves_transformers_read_back(case):
    report = json.load(open(os.path.join(FIXTURES, case, "report.json")))
    assert report["roundtrip_params_identical"] and report["roundtrip_max_abs_logit_diff"] < 1e-12
    assert report["minilm_vs_transformers_max_rel_logits"] < 1e-10


@pytest.mark.parametrize("case", sorted(CASES))
def test_hidden_states_and_their_extra_gradients_match_transformers(case):
    """backward(dhidden_states=...): loss + sum_i <hidden_i, dhidden_i>, against transformers
    (hidden.npz: `python tests/fixtures/make_llama_fixtures.py hidden`)."""
    folder = os.path.join(FIXTURES, case)
    model = CASES[case].from_pretrained(folder, dtype="float64")
    inp, ref = np.load(os.path.join(folder, "inputs.npz")), np.load(os.path.join(folder, "hidden.npz"))
    out = model(inp["input_ids"], attention_mask=inp["attention_mask"], labels=inp["labels"],
                output_hidden_states=True)
    L1 = len(out.hidden_states)
    assert L1 == len([k for k in ref.files if k.startswith("hidden_")]) == model.config.num_hidden_layers + 1
    for i, h in enumerate(out.hidden_states):
        assert max_rel(h, ref[f"hidden_{i}"]) < 1e-10, i
    dhs = tuple(ref[f"dhidden_{i}"] if f"dhidden_{i}" in ref.files else None for i in range(L1))
    assert dhs[1] is None and dhs[0] is not None and dhs[-1] is not None
    hloss = out.loss + sum(float((to_numpy(h) * g).sum()) for h, g in zip(out.hidden_states, dhs) if g is not None)
    assert hloss == pytest.approx(float(ref["hloss"]), rel=1e-10)
    model.zero_grad()
    assert model.backward(dhidden_states=dhs) is None
    params = dict(model.named_parameters())
    want = {k[len("hgrad/"):]: ref[k] for k in ref.files if k.startswith("hgrad/")}
    assert set(want) - {"lm_head.weight"} == set(params) - {"lm_head.weight"}
    for name, g in want.items():
        if name == "lm_head.weight" and name not in params:
            continue                                         # tied: its gradient is in embed_tokens'
        assert max_rel(LlamaForCausalLM._transposed(name, params[name].grad), g) < 1e-10, name


@pytest.mark.parametrize("i", range(3))
def test_only_hidden_states_in_the_loss(i):
    """No labels: the gradient of sum_i <hidden_i, g_i> alone, against central differences
    along one random direction of every parameter (float64)."""
    model = tiny_models()[i]
    rng = np.random.default_rng(10 + i)
    ids = rng.integers(0, 11, (2, 5))
    mask = np.ones((2, 5), dtype=int)
    mask[0, 4:] = 0
    out = model(ids, attention_mask=mask, output_hidden_states=True)
    gs = [asarray(rng.standard_normal(h.shape)) for h in out.hidden_states]
    dhs = (None,) + tuple(gs[1:])                             # the embeddings' entry skipped

    def f():
        hs = model(ids, attention_mask=mask, output_hidden_states=True).hidden_states
        return sum(float((h * g).sum()) for h, g in zip(hs[1:], gs[1:]))

    model(ids, attention_mask=mask, output_hidden_states=True)
    model.zero_grad()
    model.backward(dhidden_states=dhs)
    params = model.parameters()
    dirs = [asarray(rng.standard_normal(p.data.shape)) for p in params]
    analytic = sum(float((p.grad * r).sum()) for p, r in zip(params, dirs))
    eps = 1e-6

    def shift(t):                                             # every parameter += t eps r
        for p, r in zip(params, dirs):
            p.data += t * eps * r

    shift(1)
    fp = f()
    shift(-2)
    fm = f()
    shift(1)
    assert analytic == pytest.approx((fp - fm) / (2 * eps), rel=1e-6)
    if model.lm_head is not None:                             # the head is not in this loss
        assert not model.lm_head.weight.grad.any()
    with pytest.raises(ValueError, match="dhidden_states has 2 entries; out.hidden_states has 3"):
        model(ids, output_hidden_states=True)
        model.backward(dhidden_states=(None, gs[1]))


# -- minilm.costs -----------------------------------------------------------------------------

from minilm.costs import count_parameters, flops_per_token  # noqa: E402

# the published config.json values (rope_scaling, which changes no parameter count, left out)
LLAMA_3_2_1B = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                           num_attention_heads=32, num_key_value_heads=8, head_dim=64, tie_word_embeddings=True,
                           max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5)
QWEN3_0_6B = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                         num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                         max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6)


def test_parameter_counts_of_published_configs_match_transformers():
    ref = json.load(open(os.path.join(FIXTURES, "llama_costs.json")))     # transformers on the meta device
    assert count_parameters(LLAMA_3_2_1B) == ref["Llama-3.2-1B"]["parameters"] == 1_235_814_400
    assert count_parameters(QWEN3_0_6B) == ref["Qwen3-0.6B"]["parameters"] == 596_049_920
    assert count_parameters(QWEN3_0_6B, non_embedding=True) == 28 * (2 * 1024 * 2048 + 2 * 1024 * 1024 + 3 * 1024 * 3072)


def test_parameter_counts_equal_minilm_models_and_flops_formula():
    for model in tiny_models():
        assert count_parameters(model.config) == model.num_parameters()
    cfg = tiny_models()[2].config                           # C 8, H 4, H_kv 1, D 6, F 12, L 2, V 11
    assert flops_per_token(cfg, n_ctx=5) == 2 * (2 * (2 * 8 * 24 + 2 * 8 * 6 + 3 * 8 * 12) + 4 * 5 * 24) + 2 * 8 * 11
    # torch.utils.flop_counter.FlopCounterMode on transformers' Qwen3ForCausalLM of this config,
    # eager attention, one (1, 5) forward, divided by 5 (measured once, torch 2.13.0)
    assert flops_per_token(cfg, n_ctx=5) == 4208.0


@pytest.mark.parametrize("i", range(3))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_activation_formula_matches_what_llama_keeps(i, dtype):
    """minilm.costs.activation_memory for Llama / Qwen3 configs against the bytes the models'
    caches really hold after a forward (measure_activation_bytes walks them), with and
    without labels; GQA, tied MHA, and Qwen3's q/k norms with head_dim != C / H."""
    from minilm.costs import activation_memory, measure_activation_bytes
    model = tiny_models()[i]
    model = type(model)(model.config, dtype=dtype)
    ids = np.random.default_rng(i).integers(0, 11, (3, 7))
    out = model(ids, labels=ids)
    assert measure_activation_bytes(model, extra=[out.logits]) == \
        activation_memory(model.config, 3, 7, dtype=dtype)["total"]
    out = model(ids[:2, :5])
    mem = activation_memory(model.config, 2, 5, dtype=dtype, with_loss=False)
    assert measure_activation_bytes(model, extra=[out.logits]) == mem["total"]
    assert mem["total"] == mem["blocks"] + mem["outside"] == 2 * mem["per_layer"] + mem["outside"]


def test_kv_cache_memory_matches_init_kv_cache_and_published_configs():
    from minilm.costs import kv_cache_memory
    from minilm.models import GPT, GPTConfig
    for model in tiny_models() + [GPT(GPTConfig(vocab_size=11, n_positions=16, n_embd=8, n_layer=2, n_head=4))]:
        cache = model.init_kv_cache(3, 9)
        allocated = sum(int(a.nbytes) for kv in cache for a in kv)
        assert kv_cache_memory(model.config, 3, 9, dtype=str(model.dtype))["total"] == allocated
    # by hand: 2 (K and V) x 16 layers x 8 key/value heads x 64 x 2 bytes (bfloat16) = 32 KiB per
    # token for Llama-3.2-1B; 2 x 28 x 8 x 128 x 2 = 112 KiB for Qwen3-0.6B
    assert kv_cache_memory(LLAMA_3_2_1B, dtype="bfloat16")["per_token"] == 32768
    assert kv_cache_memory(QWEN3_0_6B, dtype="bfloat16")["per_token"] == 114688
    assert kv_cache_memory(LLAMA_3_2_1B, 1, 4096, "bfloat16")["total"] == 4096 * 32768   # 128 MiB
    full = dataclasses.replace(LLAMA_3_2_1B, num_key_value_heads=32)   # the same model without GQA
    assert kv_cache_memory(full)["per_token"] == 4 * kv_cache_memory(LLAMA_3_2_1B)["per_token"]
    from minilm.models import BertConfig
    with pytest.raises(ValueError, match="BERT encoder .* keeps no key/value cache"):
        kv_cache_memory(BertConfig())
    with pytest.raises(ValueError, match="positive"):
        kv_cache_memory(LLAMA_3_2_1B, 1, 0)


def test_optimizer_and_training_memory_for_llama():
    from minilm.costs import activation_memory, optimizer_memory, summary, training_memory
    from minilm.optim import AdamW
    model = tiny_models()[0]
    model = LlamaForCausalLM(model.config)                   # float32
    opt = AdamW(model.parameters(), lr=1e-3)
    ids = np.array([[1, 2, 3, 4]])
    model(ids, labels=ids)
    model.backward()
    opt.step()
    expected = optimizer_memory(model.config, "adamw", minilm=True)
    assert expected["weights"] == sum(int(p.data.nbytes) for p in model.parameters())
    assert expected["optimizer_state"] == sum(int(v.nbytes) for st in opt.state.values()
                                              for v in st.values() if hasattr(v, "nbytes"))
    mem = training_memory(LLAMA_3_2_1B, 1, 2048)
    assert mem["activations"] == activation_memory(LLAMA_3_2_1B, 1, 2048)["total"]
    assert mem["total"] == sum(v for k, v in mem.items() if k != "total")
    text = summary(QWEN3_0_6B, seq_len=1024)
    assert "596,049,920" in text and "H_kv=8" in text and "114,688" not in text   # float32: 229,376
    assert "229,376 bytes per token" in text
    with pytest.raises(ValueError, match="convention='minilm' without dropout"):
        activation_memory(LLAMA_3_2_1B, 1, 16, convention="korthikanti")


def test_config_reads_transformers_v5_rope_parameters_and_eos_lists():
    cfg = LlamaConfig.from_dict(dict(TINY, num_key_value_heads=2, eos_token_id=[1, 2],
                                     rope_parameters={"rope_type": "default", "rope_theta": 123.0}))
    assert cfg.rope_theta == 123.0 and cfg.eos_token_id == [1, 2]
    with pytest.raises(ValueError, match="rope_scaling"):
        LlamaConfig.from_dict(dict(TINY, rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 32.0}))


# -- Backend parity and dtypes ----------------------------------------------------------------

def test_ops_keep_float32_and_agree_with_numpy(xp):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)
    w = rng.standard_normal(6).astype(np.float32)
    W = rng.standard_normal((3, 6, 6)).astype(np.float32)
    cos, sin = rope_tables(np.arange(4)[None], 6, dtype=np.float32)
    runs = {}
    for name, mod in (("ref", np), ("xp", xp)):
        a = lambda v: mod.asarray(v)                                        # noqa: E731
        outs = [rmsnorm_forward(a(x), a(w))[0], rope_forward(a(x), a(cos), a(sin))[0],
                swiglu_forward(a(x), a(W[0]), a(W[1]), a(W[2]))[0], repeat_kv_forward(a(x), 2)[0]]
        assert all(o.dtype == np.float32 for o in outs)
        runs[name] = [np.asarray(o.get() if hasattr(o, "get") else o) for o in outs]
    for r, o in zip(runs["ref"], runs["xp"]):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)


def test_float32_model_stays_float32():
    model = LlamaForCausalLM(LlamaConfig(**TINY, num_key_value_heads=2))
    out = model(np.array([[1, 2, 3]]), labels=np.array([[1, 2, 3]]))
    assert out.logits.dtype == np.float32
    model.backward()
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_inspection_interface_attentions_hidden_states_and_inputs_embeds():
    model = tiny_models()[2]
    ids = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    out = model(ids, labels=ids, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 4, 4)
    np.testing.assert_allclose(to_numpy(out.attentions[1].sum(-1)), 1.0, rtol=1e-12)
    assert np.triu(to_numpy(out.attentions[0][0, 0]), 1).max() == 0            # causal
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (2, 4, 8)
    embeds = model.model.embed_tokens.weight.data[ids]
    out2 = model(inputs_embeds=embeds, labels=ids)
    np.testing.assert_array_equal(to_numpy(out2.logits), to_numpy(out.logits))
    model.zero_grad()
    dembeds = model.backward()                                                   # d loss / d inputs_embeds
    r = asarray(np.random.default_rng(0).standard_normal(embeds.shape))          # one random direction
    h = 1e-5
    numeric = (float(model(inputs_embeds=embeds + h * r, labels=ids).loss)
               - float(model(inputs_embeds=embeds - h * r, labels=ids).loss)) / (2 * h)
    assert float((dembeds * r).sum()) == pytest.approx(numeric, rel=1e-6)


def test_llama_is_a_pretrained_model_that_checkpoints_and_resumes(tmp_path):
    """Llama shares GPT's base (PreTrainedModel): no dropout stream (rng_state() is None, a
    state for one is refused), and the Trainer saves and resumes it to the same weights."""
    from minilm.models.base import PreTrainedModel
    from minilm.optim import AdamW
    from minilm.train import Trainer
    tokens = np.random.default_rng(0).integers(0, TINY["vocab_size"], size=300)

    def batch(rng):
        starts = rng.integers(0, len(tokens) - 9, size=3)
        x = np.stack([tokens[s:s + 9] for s in starts])
        return {"input_ids": x, "labels": x}

    def run(steps, resume_from=None):
        model = LlamaForCausalLM(LlamaConfig(**TINY, num_key_value_heads=2))
        trainer = Trainer(model, AdamW(model.parameters(), lr=1e-2), batch, max_steps=steps,
                          progress=False, checkpoint_dir=str(tmp_path / f"run{steps}"), seed=3)
        trainer.fit(resume_from=resume_from)
        return trainer

    model = LlamaForCausalLM(LlamaConfig(**TINY))
    assert isinstance(model, PreTrainedModel) and model.rng_state() is None
    with pytest.raises(AttributeError, match="no dropout Generator"):
        model.dropout_generator()
    with pytest.raises(ValueError, match="no dropout stream"):
        model.set_rng_state(np.random.default_rng(0).bit_generator.state)
    half = run(3)
    full = run(6)
    resumed = run(6, resume_from=half.save_checkpoint(str(tmp_path / "half")))
    assert resumed.step == 6
    for (name, p), (_, q) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert np.array_equal(to_numpy(p.data), to_numpy(q.data)), name
