"""The public inspection interface (API.md, "Looking inside a model"): output_attentions,
output_hidden_states, inputs_embeds and backward(dhidden_states=...), against `transformers`
(tests/fixtures/inspection/, made by tests/fixtures/make_inspection_fixtures.py) for GPT-2
and BERT, and by self-consistency and finite differences for the encoder-decoder."""
import os

import numpy as np
import pytest

import minilm
from minilm.backend import asarray
from minilm.models import Seq2SeqTransformer, TransformerConfig

from conftest import FIXTURES, grad_close
from test_bert import load_case as load_bert
from test_gpt import load_case as load_gpt
from test_gpt import tiny as tiny_gpt

CASES = ["gpt2_tiny_a", "bert_seqcls", "bert_tokcls"]


def load(case):
    """(model, inputs, reference, {param name: PyTorch-layout gradient getter})."""
    ref = dict(np.load(os.path.join(FIXTURES, "inspection", case + ".npz")))
    if case.startswith("gpt2"):
        model, a = load_gpt(case)
        grads = lambda: {n: minilm.to_numpy(p.grad) for n, p in model.named_parameters()}
    else:
        model, a = load_bert(case)
        grads = model.hf_grads
    return model, a["inputs"], ref, grads


def rel(a, ref):
    return float(np.abs(minilm.to_numpy(a) - ref).max() / max(np.abs(ref).max(), 1e-300))


def kwargs(case, inp):
    kw = dict(attention_mask=inp["attention_mask"], labels=inp["labels"])
    if case.startswith("bert"):
        kw["token_type_ids"] = inp["token_type_ids"]
    return kw


def check_grads(grads, ref, prefix):
    want = {k[len(prefix):]: v for k, v in ref.items() if k.startswith(prefix)}
    assert set(grads) == set(want)
    total = np.sqrt(sum((g ** 2).sum() for g in want.values()))
    for name, g in grads.items():
        # a gradient that is 0 in exact arithmetic (attention key biases) is round-off on
        # both sides: there the scale is a millionth of the whole gradient's norm
        assert grad_close(g, want[name], rel=1e-10, floor=1e-6, total_norm=total), name


@pytest.mark.parametrize("case", CASES)
def test_attentions_and_hidden_states_match_transformers(case):
    model, inp, ref, _ = load(case)
    out = model(inp["input_ids"], output_attentions=True, output_hidden_states=True, **kwargs(case, inp))
    n_att = len([k for k in ref if k.startswith("attentions_")])
    n_hid = len([k for k in ref if k.startswith("hidden_states_")])
    assert len(out.attentions) == n_att and len(out.hidden_states) == n_hid == n_att + 1
    for l, a in enumerate(out.attentions):
        assert rel(a, ref[f"attentions_{l}"]) <= 1e-10, l
    for i, h in enumerate(out.hidden_states):
        assert rel(h, ref[f"hidden_states_{i}"]) <= 1e-10, i
    plain = model(inp["input_ids"], **kwargs(case, inp))
    assert plain.attentions is None and plain.hidden_states is None


@pytest.mark.parametrize("case", CASES)
def test_extra_gradients_on_hidden_states_match_transformers(case):
    model, inp, ref, grads = load(case)
    out = model(inp["input_ids"], output_hidden_states=True, **kwargs(case, inp))
    dhs = tuple(ref.get(f"dhidden_{i}") for i in range(len(out.hidden_states)))
    assert dhs[1] is None
    hloss = out.loss + sum(float((minilm.to_numpy(h) * g).sum())
                           for h, g in zip(out.hidden_states, dhs) if g is not None)
    assert hloss == pytest.approx(float(ref["hloss"]), rel=1e-10)
    model.zero_grad()
    model.backward(dhidden_states=dhs)
    check_grads(grads(), ref, "hgrad/")


@pytest.mark.parametrize("case", CASES)
def test_inputs_embeds_and_its_gradient_match_transformers(case):
    model, inp, ref, grads = load(case)
    kw = kwargs(case, inp)
    out = model(inputs_embeds=ref["inputs_embeds"], **kw)
    assert rel(out.logits, ref["embeds_logits"]) <= 1e-10
    assert out.loss == pytest.approx(float(ref["embeds_loss"]), rel=1e-10)
    model.zero_grad()
    dE = model.backward()
    assert rel(dE, ref["embeds_grad"]) <= 1e-10
    check_grads(grads(), ref, "egrad/")
    # the looked-up rows given as inputs_embeds give the same logits as the ids
    E = model.transformer.wte.weight.data if case.startswith("gpt2") else \
        model.bert.embeddings.word_embeddings.weight.data
    a = model(inp["input_ids"], **kw).logits
    b = model(inputs_embeds=E[inp["input_ids"]], **kw).logits
    assert rel(b, minilm.to_numpy(a)) <= 1e-12
    assert model(inp["input_ids"], **kw) and model.backward() is None   # ids: nothing returned


def test_only_hidden_states_in_the_loss():
    """backward(dhidden_states=...) without labels: the gradient of <h_i, g> alone, checked
    against finite differences."""
    model = tiny_gpt(seed=3)
    ids = np.array([[1, 4, 2, 7], [3, 3, 0, 5]])
    g = np.random.default_rng(0).standard_normal((2, 4, 8))
    out = model(ids, output_hidden_states=True)
    L = len(out.hidden_states)
    dhs = tuple(g if i == 1 else None for i in range(L))
    model.zero_grad()
    model.backward(dhidden_states=dhs)
    p = model.transformer.h[0].attn.c_attn.weight
    f = lambda: float((minilm.to_numpy(model(ids, output_hidden_states=True).hidden_states[1]) * g).sum())
    eps, idx = 1e-6, (3, 5)
    old = float(p.data[idx])                 # a copy: on CuPy p.data[idx] is a 0-d view
    p.data[idx] = old + eps
    fp = f()
    p.data[idx] = old - eps
    fm = f()
    p.data[idx] = old
    assert float(p.grad[idx]) == pytest.approx((fp - fm) / (2 * eps), rel=1e-6)
    with pytest.raises(ValueError, match="entries"):
        model(ids, output_hidden_states=True)
        model.backward(dhidden_states=(g,))


def test_input_ids_or_inputs_embeds_not_both():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="exactly one"):
        model(np.array([[1, 2]]), inputs_embeds=np.zeros((1, 2, 8)))
    with pytest.raises(ValueError, match="exactly one"):
        model()


# ---- the encoder-decoder: no transformers equivalent, so self-consistency and finite differences

def tiny_seq2seq(norm_first):
    cfg = TransformerConfig(src_vocab_size=11, tgt_vocab_size=13, d_model=8, nhead=2,
                            num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=12,
                            dropout=0.0, max_position_embeddings=16, norm_first=norm_first,
                            label_smoothing=0.1, seed=5)
    return Seq2SeqTransformer(cfg, dtype="float64")


SRC = np.array([[4, 5, 6, 7, 2], [8, 3, 9, 2, 0]])
SRC_MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
LABELS = np.array([[5, 6, 7, 2], [9, 3, 2, -100]])


@pytest.mark.parametrize("norm_first", [False, True])
def test_seq2seq_states_and_attentions_are_consistent(norm_first):
    model = tiny_seq2seq(norm_first)
    out = model(SRC, attention_mask=SRC_MASK, labels=LABELS, output_attentions=True,
                output_hidden_states=True)
    host = minilm.to_numpy                                      # outputs live on the active backend
    enc, dec = [host(h) for h in out.encoder_hidden_states], [host(h) for h in out.decoder_hidden_states]
    assert len(enc) == len(dec) == 3
    assert np.array_equal(enc[-1], host(out.encoder_last_hidden_state))
    E = host(model.decoder.embed_tokens.weight.data)
    assert np.allclose(dec[-1] @ E.T, host(out.logits), rtol=0, atol=1e-12)
    # the entries are the stacks' inputs: layer i's input is state i
    src_mask = (SRC_MASK != 0)[:, None, None, :]
    x = model.encoder.layers[1].forward(out.encoder_hidden_states[1], key_mask=asarray(src_mask))
    if not norm_first:
        assert np.allclose(host(x), enc[2], rtol=0, atol=1e-12)
    B, H, S, T = 2, 2, 5, 4
    for a in map(host, out.encoder_attentions):
        assert a.shape == (B, H, S, S) and np.allclose(a.sum(-1), 1.0)
        assert np.all(a[1, :, :, 4] == 0.0)                     # the padded source key
    for a in map(host, out.decoder_attentions):
        assert a.shape == (B, H, T, T) and np.all(np.triu(a, k=1) == 0.0)   # causal
    for a in map(host, out.cross_attentions):
        assert a.shape == (B, H, T, S) and np.all(a[1, :, :, 4] == 0.0)
    # layer 0's encoder attention, recomputed from its input state (post-LN reads it as is)
    if not norm_first:
        attn = model.encoder.layers[0].self_attn
        q = (enc[0] @ host(attn.q.weight.data) + host(attn.q.bias.data)).reshape(B, S, H, 4).transpose(0, 2, 1, 3)
        k = (enc[0] @ host(attn.k.weight.data) + host(attn.k.bias.data)).reshape(B, S, H, 4).transpose(0, 2, 1, 3)
        s = q @ k.transpose(0, 1, 3, 2) / 2.0 + np.where(src_mask, 0.0, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        assert np.allclose(p / p.sum(-1, keepdims=True), host(out.encoder_attentions[0]), atol=1e-12)


@pytest.mark.parametrize("norm_first", [False, True])
def test_seq2seq_gradients_with_hidden_state_terms_and_inputs_embeds(norm_first):
    """loss + sum_i <enc_i, g_i> + sum_j <dec_j, h_j> on inputs_embeds: the parameter and the
    inputs_embeds gradients against central differences."""
    model = tiny_seq2seq(norm_first)
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((2, 5, 8))
    genc = (rng.standard_normal((2, 5, 8)), None, rng.standard_normal((2, 5, 8)))
    gdec = (None, rng.standard_normal((2, 4, 8)), rng.standard_normal((2, 4, 8)))

    def f():
        o = model(inputs_embeds=emb, attention_mask=SRC_MASK, labels=LABELS, output_hidden_states=True)
        return o.loss + sum(float((minilm.to_numpy(h) * g).sum()) for hs, gs in ((o.encoder_hidden_states, genc),
                                                                (o.decoder_hidden_states, gdec))
                            for h, g in zip(hs, gs) if g is not None)

    f()
    model.zero_grad()
    dE = model.backward(dencoder_hidden_states=genc, ddecoder_hidden_states=gdec)
    checks = [(emb, (1, 2, 3), dE)]
    for name in ("encoder.layers.0.self_attn.q_proj.weight", "decoder.layers.1.multihead_attn.k_proj.weight",
                 "decoder.layers.0.norm1.bias", "decoder.embed_tokens.weight"):
        p = dict(model.named_parameters())[name]
        checks.append((p.data, (2, 3)[:p.data.ndim], p.grad))
    for arr, idx, grad in checks:
        old = float(arr[idx])                # a copy (a 0-d view on CuPy)
        arr[idx] = old + 1e-6
        fp = f()
        arr[idx] = old - 1e-6
        fm = f()
        arr[idx] = old
        assert float(grad[idx]) == pytest.approx((fp - fm) / 2e-6, rel=1e-6, abs=1e-9)
    # the same source given as ids or as its scaled embeddings
    a = model(SRC, attention_mask=SRC_MASK, labels=LABELS).logits
    e = model.encoder.embed_tokens.weight.data[SRC] * model.encoder.scale
    b = model(inputs_embeds=e, attention_mask=SRC_MASK, labels=LABELS).logits
    assert np.allclose(minilm.to_numpy(a), minilm.to_numpy(b), rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", ["gpt", "bert"])
def test_position_embeddings_have_per_example_gradients(family):
    """Positions are an Embedding lookup, so DP-SGD gets their per-example gradients too:
    they sum to the batch gradient, and example b's equals a batch of b alone."""
    if family == "gpt":
        model = tiny_gpt(seed=2)
        table = model.transformer.wpe.weight
        kw = dict(labels=np.array([[1, 4, 2, 7], [3, 3, 9, 5]]))
        ids = kw["labels"]
    else:
        model, _ = load_bert("bert_seqcls")
        table = model.bert.embeddings.position_embeddings.weight
        ids = np.array([[1, 5, 6, 2], [1, 7, 2, 0]])
        kw = dict(labels=np.array([0, 2]), attention_mask=(ids != 0).astype(int))
    model.per_example_grads()
    model.zero_grad()
    model(ids, **kw)
    model.backward()
    g = minilm.to_numpy(table.grad_sample)
    assert g.shape == (2,) + table.shape
    assert np.allclose(g.sum(axis=0), minilm.to_numpy(table.grad), rtol=0, atol=1e-12)
    model.per_example_grads(False)
    model.zero_grad()
    one = {k: v[:1] for k, v in kw.items()}
    out = model(ids[:1], **one)
    model.backward()
    # the batch loss is a mean over both examples' terms (GPT: 3 + 3 predicted tokens, BERT: 2
    # labels), example 0's alone over half as many
    assert np.allclose(g[0] * 2.0, minilm.to_numpy(table.grad), rtol=1e-9, atol=1e-12), out.loss


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_forward_generate_backward_on_inputs_embeds(arch):
    """generate() between a forward on inputs_embeds and its backward leaves the backward's
    state alone (caches and what else the forward kept): the same d loss / d embeds."""
    from minilm.models import GPT, GPTConfig, LlamaConfig, LlamaForCausalLM
    if arch == "gpt":
        model = GPT(GPTConfig(vocab_size=11, n_positions=16, n_embd=8, n_layer=1, n_head=2, seed=0),
                    dtype="float64")
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=11, hidden_size=8, intermediate_size=12,
                                             num_hidden_layers=1, num_attention_heads=2,
                                             num_key_value_heads=1, max_position_embeddings=16,
                                             seed=0), dtype="float64")
    model.eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 11, (2, 5))
    embeds = minilm.backend.asarray(rng.standard_normal((2, 5, 8)))

    def grad(generate_between):
        model.zero_grad()
        model(inputs_embeds=embeds, labels=ids)
        if generate_between:
            for use_cache in (False, True):
                model.generate(ids[:1, :3], max_new_tokens=2, use_cache=use_cache)
        return minilm.to_numpy(model.backward())
    want = grad(False)
    assert want.shape == (2, 5, 8) and np.abs(want).max() > 0
    np.testing.assert_array_equal(grad(True), want)
