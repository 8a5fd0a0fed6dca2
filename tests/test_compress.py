"""minilm.compress: distillation, quantisation, pruning, LoRA.

Gradient checks run in float64 against central differences; the rest checks the promises
each technique makes (LoRA starts as the base model, pruned weights stay zero, int8
checkpoints are 4x smaller, removing a gated-off head changes nothing, bad input fails).
"""
import os

import numpy as np
import pytest

import minilm
from minilm.backend import asarray, to_numpy
from minilm.check import numerical_grad
from minilm.compress import (Distiller, GatedCausalSelfAttention, LoRALinear, MaskedLinear,
                             QATLinear, QuantizedLinear, add_head_gates, apply_lora, apply_masks,
                             dequantize, distillation_loss_backward, distillation_loss_forward,
                             fake_quant_backward, fake_quant_forward, head_gate_backward,
                             head_gate_forward, head_importance, heads_to_prune,
                             hidden_mse_backward, hidden_mse_forward, int8_matmul, load_quantized,
                             lora_parameters, magnitude_prune, mask_heads, merge_lora,
                             parameter_report, prepare_qat, prune_heads, quant_params, quantize,
                             quantize_model, quantize_rows, save_quantized, sparsity, weight_bytes)
from minilm.layers import CausalSelfAttention, Linear
from minilm.models import BertConfig, BertForSequenceClassification, GPT, GPTConfig
from minilm.optim import AdamW

RTOL, ATOL = 1e-5, 1e-7


def gpt_config(V=37, C=24, L=2, H=3, P=16, seed=0):
    return GPTConfig(vocab_size=V, n_positions=P, n_embd=C, n_layer=L, n_head=H, resid_pdrop=0.0,
                     attn_pdrop=0.0, embd_pdrop=0.0, seed=seed, bos_token_id=None, eos_token_id=None)


def bert_config(C=24, L=2, H=3, K=3):
    return BertConfig(vocab_size=50, hidden_size=C, num_hidden_layers=L, num_attention_heads=H,
                      intermediate_size=40, max_position_embeddings=16, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, num_labels=K)


def ids_batch(B=2, T=7, V=37, seed=0):
    return np.random.default_rng(seed).integers(1, V, (B, T))    # no id 0: BERT's [PAD] gets no gradient


# ----------------------------------------------------------------------------------------
# Distillation
# ----------------------------------------------------------------------------------------

def test_distillation_loss_gradcheck():
    rng = np.random.default_rng(0)
    zs, zt = rng.standard_normal((6, 5)) * 2, rng.standard_normal((6, 5)) * 2
    labels = np.array([0, 4, -100, 2, 1, 3])              # one row ignored
    for T, alpha, lab in [(3.0, 0.3, labels), (1.0, 0.0, labels), (2.0, 1.0, None)]:
        f = lambda z: distillation_loss_forward(z, zt, lab, T, alpha)[0]
        _, cache = distillation_loss_forward(zs, zt, lab, T, alpha)
        np.testing.assert_allclose(distillation_loss_backward(1.0, cache), numerical_grad(f, zs),
                                   rtol=RTOL, atol=ATOL)


def test_distillation_gradient_formula():
    """dz_s = alpha T (p_s^T - p_t^T) / N + (1 - alpha) (p_s - onehot) / N."""
    rng = np.random.default_rng(1)
    N, V, T, alpha = 4, 6, 2.5, 0.7
    zs, zt, y = rng.standard_normal((N, V)), rng.standard_normal((N, V)), np.array([1, 0, 5, 2])
    soft = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
    expected = alpha * T * (soft(zs / T) - soft(zt / T)) / N + (1 - alpha) * (soft(zs) - np.eye(V)[y]) / N
    _, cache = distillation_loss_forward(zs, zt, y, T, alpha)
    np.testing.assert_allclose(distillation_loss_backward(1.0, cache), expected, rtol=1e-12, atol=1e-15)
    loss, _ = distillation_loss_forward(zt, zt, None, T, 1.0)  # student = teacher: KL = 0
    assert abs(loss) < 1e-12


def test_hidden_mse_gradcheck():
    rng = np.random.default_rng(2)
    h, t = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    _, cache = hidden_mse_forward(h, t, mask)
    num = numerical_grad(lambda a: hidden_mse_forward(a, t, mask)[0], h)
    np.testing.assert_allclose(hidden_mse_backward(1.0, cache), num, rtol=RTOL, atol=ATOL)


def test_distiller_gradcheck_gpt_with_hidden_states():
    """The whole distillation objective (soft targets + labels + projected hidden states,
    teacher wider and deeper than the student) against finite differences."""
    teacher = GPT(gpt_config(C=24, L=3, H=3, seed=1), dtype="float64")
    student = GPT(gpt_config(C=16, L=2, H=2, seed=2), dtype="float64")
    d = Distiller(teacher, student, temperature=2.0, alpha=0.6, hidden_weight=0.5)
    ids = ids_batch(2, 6)
    res = minilm.gradcheck(d, ids, labels=ids, max_elements=12)
    assert res.ok, res
    names = [r[0] for r in res.rows]
    assert "projections.0.weight" in names and not any(n.startswith("teacher") for n in names)


def test_distiller_gradcheck_bert_classifier():
    teacher = BertForSequenceClassification(bert_config(C=24, L=2), dtype="float64")
    student = BertForSequenceClassification(bert_config(C=12, L=1, H=2), dtype="float64")
    d = Distiller(teacher, student, temperature=3.0, alpha=0.5, hidden_weight=1.0)
    ids, mask = ids_batch(3, 6, V=50), np.ones((3, 6), int)
    mask[2, 4:] = 0
    res = minilm.gradcheck(d, ids, labels=np.array([0, 2, 1]), attention_mask=mask, max_elements=8)
    assert res.ok, res


def test_distillation_rejects_other_vocabulary():
    teacher, student = GPT(gpt_config(V=40)), GPT(gpt_config(V=37))
    with pytest.raises(ValueError, match="same"):
        Distiller(teacher, student)(input_ids=ids_batch(), labels=ids_batch())
    with pytest.raises(ValueError, match="same classes"):
        distillation_loss_forward(np.zeros((2, 3)), np.zeros((2, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match="alpha=1.0"):
        distillation_loss_forward(np.zeros((2, 3)), np.zeros((2, 3)), None, alpha=0.5)


# ----------------------------------------------------------------------------------------
# Quantisation
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("axis", [None, -1, 0])
def test_quantize_roundtrip_error_is_half_a_step(symmetric, axis):
    w = np.random.default_rng(3).standard_normal((20, 9)) * np.linspace(0.1, 3, 9)
    s, z = quant_params(w, symmetric, axis)
    q = quantize(w, s, z, symmetric=symmetric)
    assert q.dtype == np.int8
    assert np.all(np.abs(dequantize(q, s, z) - w) <= s / 2 + 1e-12)
    assert np.all(dequantize(quantize(np.zeros_like(w), s, z, symmetric=symmetric), s, z) == 0)


def test_int8_matmul_int32_accumulation_exact_and_no_overflow():
    """Worst case for the sizes used here (K up to 1536 = MiniLM's feed-forward width): every
    product -128 * -128... (int8 extremes) still fits int32, and the float64 path agrees."""
    K = 1536
    a = np.full((2, K), -127, np.int8)
    b = np.full((K, 3), -128, np.int8)
    exact = K * 127 * 128
    assert exact < 2 ** 31 - 1
    acc = int8_matmul(a, b, "int32")
    assert acc.dtype == np.int32 and np.all(acc == exact)
    rng = np.random.default_rng(4)
    a, b = rng.integers(-127, 128, (5, K)).astype(np.int8), rng.integers(-128, 128, (K, 4)).astype(np.int8)
    ref = a.astype(np.int64) @ b.astype(np.int64)
    np.testing.assert_array_equal(int8_matmul(a, b, "int32"), ref)
    np.testing.assert_array_equal(int8_matmul(a, b, "float64"), ref)


@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel"])
def test_quantized_linear_matches_float_within_quantisation_error(scheme, granularity):
    """|y_int8 - y| <= sum_k |x_k| ds_w/2 + |w_k| s_x/2 + s_x s_w/4 per output (the rounding
    errors of x and W), for both integer paths, which agree exactly."""
    rng = np.random.default_rng(5)
    lin = Linear(48, 20, dtype="float64", rng=rng, std=0.3)
    lin.bias.data[...] = asarray(rng.standard_normal(20))
    x = rng.standard_normal((4, 6, 48)) * 2                  # the bound is computed on the host
    y = to_numpy(lin.forward(asarray(x)))
    ql = QuantizedLinear.from_linear(lin, scheme, granularity, matmul="int32")
    yq = to_numpy(ql.forward(asarray(x)))
    ql.matmul = "float64"
    np.testing.assert_array_equal(to_numpy(ql.forward(asarray(x))), yq)
    s_w = to_numpy(ql.weight_scale.data)
    _, s_x = quantize_rows(x.reshape(-1, 48))
    W = to_numpy(lin.weight.data)
    bound = (np.abs(x.reshape(-1, 48)) @ (np.ones_like(W) * s_w / 2) + s_x / 2 * np.abs(W).sum(0)
             + 48 * s_x * s_w / 4)
    err = np.abs(yq - y).reshape(-1, 20)
    assert np.all(err <= bound + 1e-12)
    assert err.max() < 0.02 * np.abs(y).max()


def test_fake_quant_ste_gradcheck_inside_and_outside_clip_range():
    """Without round() (rounding=False) fake quantisation is a smooth clip whose true
    derivative is the straight-through estimate: 1 inside the range, 0 outside."""
    w = np.array([[-3.0, -0.77, 0.0, 0.41], [0.93, 1.6, -1.2, 2.9]])
    scale, zero = 0.01, 3                                    # range [(-127 - 3) s, (127 - 3) s]
    out, cache = fake_quant_forward(w, scale, zero, -127, 127, rounding=False)
    d = np.random.default_rng(6).standard_normal(w.shape)
    num = numerical_grad(lambda a: fake_quant_forward(a, scale, zero, -127, 127, rounding=False)[0], w, d)
    np.testing.assert_allclose(fake_quant_backward(d, cache), num, rtol=RTOL, atol=ATOL)
    assert set(np.unique(cache)) == {False, True}            # both sides were exercised
    q, _ = fake_quant_forward(w, scale, zero, -127, 127)     # with rounding: values on the grid
    assert np.allclose(np.round(q / scale) * scale, q)


def test_qat_linear_gradcheck_and_convert():
    rng = np.random.default_rng(7)
    lin = Linear(10, 6, dtype="float64", rng=rng, std=0.5)
    qat = QATLinear(lin, weight_clip=0.8, rounding=False)    # 20% of each column clipped
    s, z = qat.weight_qparams()
    qat.weight_qparams = lambda: (s, z)                      # the scale as a constant, as the STE assumes
    x = rng.standard_normal((3, 10))
    res = minilm.gradcheck(qat, x)
    assert res.ok, res
    qat.forward(asarray(x))
    qat.backward(asarray(np.ones((3, 6))))
    inside = np.abs(to_numpy(lin.weight.data)) <= 127 * to_numpy(s)
    grad = to_numpy(lin.weight.grad)
    assert np.all(grad[~inside] == 0) and np.all(grad[inside] != 0)
    qat2 = QATLinear(Linear(10, 6, dtype="float64", rng=np.random.default_rng(8)))
    x = asarray(rng.standard_normal((5, 10)))
    np.testing.assert_allclose(to_numpy(qat2.convert().forward(x)), to_numpy(qat2.forward(x)), rtol=1e-12, atol=1e-12)


def tensor_bytes(path):
    """Bytes of tensor data in a safetensors file: its size less the JSON header (names,
    shapes and checksums: a fixed cost per tensor, large beside a tiny model's tensors)."""
    with open(path, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
    return os.path.getsize(path) - 8 - header


def test_ptq_model_checkpoint_is_4x_smaller_and_reloads(tmp_path):
    cfg = GPTConfig(vocab_size=96, n_positions=32, n_embd=64, n_layer=2, n_head=4, bos_token_id=None,
                    eos_token_id=None)
    model = GPT(cfg).eval()                                  # eval: no dropout
    model.save_pretrained(tmp_path / "float")
    float_bytes = tensor_bytes(tmp_path / "float" / "model.safetensors")
    before = weight_bytes(model)
    ids = ids_batch(2, 9, V=96)
    ref = minilm.to_numpy(model(ids).logits)
    quantize_model(model, "symmetric", "per_channel")
    q_file = save_quantized(model, tmp_path / "int8")
    assert q_file == os.path.getsize(tmp_path / "int8" / "model.safetensors")
    q_bytes = tensor_bytes(tmp_path / "int8" / "model.safetensors")
    assert 3.5 < float_bytes / q_bytes < 4.0 and 3.5 < before / weight_bytes(model) < 4.0
    out = minilm.to_numpy(model(ids).logits)
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    back = load_quantized(tmp_path / "int8")
    np.testing.assert_array_equal(minilm.to_numpy(back(ids).logits), out)
    assert back.transformer.h[0].attn.c_attn.qweight.data.dtype == np.int8


def test_quantising_twice_is_an_error():
    model = GPT(gpt_config())
    quantize_model(model)
    with pytest.raises(ValueError, match="already quantised"):
        quantize_model(model)
    qat = prepare_qat(GPT(gpt_config()))
    with pytest.raises(ValueError, match="already quantised"):
        quantize_model(qat)
    with pytest.raises(ValueError, match="scheme"):
        quantize_model(GPT(gpt_config()), scheme="int4")


# ----------------------------------------------------------------------------------------
# Pruning
# ----------------------------------------------------------------------------------------

def test_masked_linear_gradcheck():
    rng = np.random.default_rng(9)
    lin = Linear(7, 5, dtype="float64", rng=rng)
    lin.bias.data[...] = asarray(rng.standard_normal(5))
    m = MaskedLinear(lin, rng.random((7, 5)) > 0.5)           # a host mask: moved to the weight's backend
    res = minilm.gradcheck(m, rng.standard_normal((2, 3, 7)))
    assert res.ok, res
    assert not m.weight.data[~m.mask.astype(bool)].any()


def test_magnitude_pruning_scopes():
    model = GPT(gpt_config(C=32, H=4))
    report = magnitude_prune(model, 0.5, scope="layer")
    assert all(abs(s - 0.5) < 0.01 for s in report.values())
    model = GPT(gpt_config(C=32, H=4))
    report = magnitude_prune(model, 0.7, scope="global")
    assert abs(sparsity(model) - 0.7) < 0.01
    assert max(report.values()) - min(report.values()) > 0.05   # layers differ under one threshold
    magnitude_prune(model, 0.8)                                   # iterative: a larger mask
    assert abs(sparsity(model) - 0.8) < 0.01


def test_pruned_weights_stay_zero_through_training():
    """Adam state from before pruning would move the pruned weights (the masked gradient is
    zero, but m / sqrt(v) is not): apply_masks after each step keeps them at zero."""
    ids = ids_batch(4, 12)

    def train(model, opt, steps, masks):
        for _ in range(steps):
            model.zero_grad()
            model(ids, labels=ids)
            model.backward()
            opt.step()
            if masks:
                apply_masks(model)

    for masks in (False, True):
        model = GPT(gpt_config())
        opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        train(model, opt, 2, masks=False)                     # dense training first: Adam state
        magnitude_prune(model, 0.6)
        pruned = [(m, m.mask == 0) for m in model.modules() if isinstance(m, MaskedLinear)]
        train(model, opt, 3, masks)
        grads_zero = all(not m.weight.grad[p].any() for m, p in pruned)
        still_zero = all(not m.weight.data[p].any() for m, p in pruned)
        assert grads_zero
        assert still_zero == masks


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_sparsity_outside_unit_interval_is_an_error(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        magnitude_prune(GPT(gpt_config()), bad)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        heads_to_prune([np.ones(3)], bad)


def test_head_gate_op_and_gated_attention_gradcheck():
    rng = np.random.default_rng(10)
    y, g = rng.standard_normal((2, 3, 4, 5)), np.array([0.5, 0.0, 1.3])
    _, cache = head_gate_forward(y, g)
    d = rng.standard_normal(y.shape)
    dy, dg = head_gate_backward(d, cache)
    np.testing.assert_allclose(dy, numerical_grad(lambda a: head_gate_forward(a, g)[0], y, d), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dg, numerical_grad(lambda a: head_gate_forward(y, a)[0], g, d), rtol=RTOL, atol=ATOL)
    attn = GatedCausalSelfAttention(CausalSelfAttention(12, 3, dtype="float64", rng=rng, std=0.3))
    attn.gate[...] = asarray(np.array([0.5, 0.0, 1.3]))         # a device array, as CuPy needs
    res = minilm.gradcheck(attn, rng.standard_normal((2, 5, 12)))
    assert res.ok, res


def test_head_importance_is_abs_gate_gradient():
    """With one example per batch, I_h = |dL/dg_h|; compare with finite differences on g."""
    model = GPT(gpt_config(), dtype="float64")
    batches = [dict(input_ids=ids_batch(1, 8, seed=s), labels=ids_batch(1, 8, seed=s)) for s in (0, 1)]
    scores = head_importance(model, batches, normalize=False)
    gated = add_head_gates(model)
    for layer in range(2):
        expected = 0
        for b in batches:
            f = lambda g: (gated[layer].__setattr__("gate", g), model(**b).loss)[1]
            grad = numerical_grad(f, asarray(np.ones(3)))
            gated[layer].gate = asarray(np.ones(3))
            expected = expected + np.abs(to_numpy(grad))
        np.testing.assert_allclose(to_numpy(scores[layer]), expected, rtol=1e-6)
    assert all(not p.grad.any() for p in model.parameters())


@pytest.mark.parametrize("kind", ["gpt", "bert"])
def test_head_pruning_shrinks_matrices_and_keeps_outputs(kind):
    ids = ids_batch(2, 7, V=37)
    if kind == "gpt":
        model = GPT(gpt_config(), dtype="float64")
        kw = {}
    else:
        model = BertForSequenceClassification(bert_config(), dtype="float64")
        mask = np.ones((2, 7), int)
        mask[1, 5:] = 0
        kw = {"attention_mask": mask}
    before = model.num_parameters()
    heads = {0: [1], 1: [0, 2]}
    mask_heads(model, heads)                                 # gates 0: those heads contribute nothing
    ref = model(ids, **kw).logits
    prune_heads(model, heads)
    np.testing.assert_allclose(to_numpy(model(ids, **kw).logits), to_numpy(ref), rtol=1e-12, atol=1e-12)
    C, D = 24, 8
    if kind == "gpt":
        attn = model.transformer.h[1].attn
        assert attn.c_attn.weight.shape == (C, 3 * D) and attn.c_proj.weight.shape == (D, C)
    else:
        layer = model.bert.encoder.layer[1].attention
        assert layer.self_attention.q.weight.shape == (C, D)
        assert layer.output.dense.weight.shape == (D, C)
    assert before - model.num_parameters() == 3 * (4 * C * D + 3 * D)   # q, k, v, o weights + q, k, v biases
    with pytest.raises(ValueError, match="no head"):
        prune_heads(model, {1: [0]})


def test_pruned_gpt_gradcheck():
    model = GPT(gpt_config(), dtype="float64")
    prune_heads(model, heads_to_prune([np.array([3.0, 1.0, 2.0]), np.array([0.5, 0.1, 0.9])], 0.4))
    assert [g.n_head for g in add_head_gates(model)] == [3, 1]          # the two lowest, both in layer 1
    ids = ids_batch(2, 6)
    res = minilm.gradcheck(model, ids, labels=ids, max_elements=10)
    assert res.ok, res


# ----------------------------------------------------------------------------------------
# LoRA
# ----------------------------------------------------------------------------------------

def test_lora_gradcheck():
    rng = np.random.default_rng(11)
    base = Linear(9, 7, dtype="float64", rng=rng, std=0.4)
    lora = LoRALinear(base, r=3, alpha=6, rng=rng, freeze_base=False)
    lora.lora_B.data[...] = asarray(rng.standard_normal((3, 7)) * 0.3)   # B = 0 would make dA = 0
    x = asarray(rng.standard_normal((2, 4, 9)))
    res = minilm.gradcheck(lora, x)
    assert res.ok, res
    full = {n: p.grad.copy() for n, p in lora.named_parameters()}
    lora.freeze_base = True                                      # frozen: same adapter grads, none for W, b
    lora.zero_grad()
    lora.forward(x)
    lora.backward(asarray(np.ones((2, 4, 7))))
    assert not lora.weight.grad.any() and not lora.bias.grad.any()
    lora2 = LoRALinear(base, r=3, alpha=6, freeze_base=False)
    lora2.lora_A.data, lora2.lora_B.data = lora.lora_A.data, lora.lora_B.data
    lora2.zero_grad()
    lora2.forward(x)
    lora2.backward(asarray(np.ones((2, 4, 7))))
    np.testing.assert_array_equal(to_numpy(lora.lora_A.grad), to_numpy(lora2.lora_A.grad))
    assert set(full) == {"weight", "bias", "lora_A", "lora_B"}


@pytest.mark.parametrize("kind", ["gpt", "bert"])
def test_lora_starts_equal_and_merges_equal(kind):
    if kind == "gpt":
        model, kw = GPT(gpt_config(), dtype="float64"), {}
    else:
        model, kw = BertForSequenceClassification(bert_config(), dtype="float64"), {}
    ids = ids_batch(2, 7)
    ref = model(ids, **kw).logits
    names_before = [n for n, _ in model.named_parameters()]
    replaced = apply_lora(model, r=4, alpha=8)
    assert len(replaced) == (8 if kind == "gpt" else 12)
    np.testing.assert_array_equal(to_numpy(model(ids, **kw).logits), to_numpy(ref))   # B = 0: exactly the base
    rng = np.random.default_rng(12)
    for p in lora_parameters(model):
        p.data += asarray(rng.standard_normal(p.shape) * 0.2)
    adapted = model(ids, **kw).logits
    assert abs(adapted - ref).max() > 1e-3
    merge_lora(model)
    np.testing.assert_allclose(to_numpy(model(ids, **kw).logits), to_numpy(adapted), rtol=1e-10, atol=1e-12)
    assert [n for n, _ in model.named_parameters()] == names_before


def test_lora_trains_only_adapters():
    model = BertForSequenceClassification(bert_config(C=96, H=4))
    apply_lora(model, r=2)
    trainable = lora_parameters(model) + model.classifier.parameters()
    report = parameter_report(model, trainable)
    assert report["percent"] < 5.0 and report["total"] == model.num_parameters()
    frozen = {n: p.data.copy() for n, p in model.named_parameters() if "lora" not in n and "classifier" not in n}
    opt = AdamW(trainable, lr=1e-2)
    ids, labels = ids_batch(4, 6, V=50), np.array([0, 1, 2, 1])
    losses = []
    for _ in range(5):
        model.zero_grad()
        losses.append(model(ids, labels=labels).loss)
        model.backward()
        opt.step()
    assert losses[-1] < losses[0]
    for n, p in model.named_parameters():
        if n in frozen:
            np.testing.assert_array_equal(to_numpy(p.data), to_numpy(frozen[n]))


@pytest.mark.parametrize("r", [0, 25])
def test_lora_rank_out_of_range_is_an_error(r):
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(Linear(24, 30), r=r)
    with pytest.raises(ValueError, match="rank"):
        apply_lora(GPT(gpt_config()), r=r)


def test_distiller_precomputed_teacher_targets_give_the_same_loss():
    teacher = BertForSequenceClassification(bert_config(C=24, L=2), dtype="float64")
    student = BertForSequenceClassification(bert_config(C=12, L=1, H=2), dtype="float64")
    d = Distiller(teacher, student, hidden_weight=1.0)
    ids, labels = ids_batch(3, 6, V=50), np.array([0, 2, 1])
    online = d(input_ids=ids, labels=labels)
    d.backward()
    logits, hidden = d.teacher_targets(ids)
    stored = d(input_ids=ids, labels=labels, teacher_logits=logits, teacher_hidden=hidden)
    d.backward()
    assert stored.loss == pytest.approx(online.loss, rel=1e-12)
    assert d.finish() is student and student.bert.encoder.layer[0].__class__.__name__ == "BertLayer"


def test_cli_costs_and_report(tmp_path):
    from minilm.compress.cli import main
    out = str(tmp_path / "runs")
    assert main(["costs", "--out", out]) == 0
    assert main(["report", "--out", out, "--results", str(tmp_path / "r.md"),
                 "--figures", str(tmp_path / "fig")]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "124,439,808" in text and "Not run" in text


def test_compressed_gpt_still_generates_with_the_kv_cache():
    """Head-pruned, LoRA, pruned and int8 GPTs generate the same tokens with and without the cache."""
    prompt = ids_batch(1, 4)
    for compress in (lambda m: prune_heads(m, {0: [1]}), lambda m: apply_lora(m, r=2),
                     lambda m: magnitude_prune(m, 0.5), lambda m: quantize_model(m, matmul="float64")):
        model = GPT(gpt_config(), dtype="float64")
        compress(model)
        a = model.generate(prompt, max_new_tokens=6, use_cache=True)
        b = model.generate(prompt, max_new_tokens=6, use_cache=False)
        np.testing.assert_array_equal(minilm.to_numpy(a), minilm.to_numpy(b))
