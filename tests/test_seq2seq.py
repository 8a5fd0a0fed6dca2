"""The encoder-decoder Transformer: gradient checks (cross-attention, layers, label smoothing,
the whole model), the copy and reverse tasks, greedy and beam search, the decoder cache,
checkpoints, the generated data, and clear errors for bad input."""
import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minilm
from minilm.check import gradcheck
from minilm.data.synthetic import (Seq2SeqData, Vocab, copy_batch, make_headline_pair, make_splits,
                                   make_translation_pair, seq2seq_batch)
from minilm.layers import MultiHeadAttention
from minilm.losses import cross_entropy_backward, cross_entropy_forward
from minilm.models import GPT, GPTConfig, Seq2SeqTransformer, TransformerConfig
from minilm.models.encoder_decoder import (DecoderLayer, EncoderLayer, shift_tokens_right,
                                           sinusoidal_positions)
from minilm.ops import padding_mask
from minilm.optim import AdamW, noam

from conftest import FIXTURES, distinct_dims, grad_close


def tiny(seed=0, dtype="float64", **kw):
    cfg = dict(src_vocab_size=11, tgt_vocab_size=13, d_model=8, nhead=2, num_encoder_layers=2,
               num_decoder_layers=2, dim_feedforward=12, dropout=0.0, label_smoothing=0.1,
               max_position_embeddings=16, seed=seed)
    cfg.update(kw)
    return Seq2SeqTransformer(TransformerConfig(**cfg), dtype=dtype)


def lengths_mask(rng, B, T, low=1):
    """(B, T) 1/0 mask with padding at the end, at least `low` real tokens per row."""
    lengths = rng.integers(low, T + 1, B)
    lengths[0] = T                                         # the longest row fills the batch
    return (np.arange(T)[None] < lengths[:, None]).astype(np.int64)


# ---- gradient checks, float64 ---------------------------------------------------------------

@settings(max_examples=10)
@given(H=st.sampled_from([1, 2]), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_cross_attention_gradcheck(H, data, seed):
    """Queries from the decoder (T), keys/values from the encoder (S): dx and dkv both checked."""
    C = 8
    dims = data.draw(distinct_dims(exclude={C, C // H}, B=(1, 3), T=(1, 5), S=(2, 7)))   # built, not filtered
    B, T, S = dims["B"], dims["T"], dims["S"]
    rng = np.random.default_rng(seed)
    attn = MultiHeadAttention(C, H, dtype="float64", rng=np.random.default_rng(seed), std=0.5)
    x, kv = rng.standard_normal((B, T, C)), rng.standard_normal((B, S, C))
    mask = padding_mask(lengths_mask(rng, B, S))
    result = gradcheck(attn, x, kv, key_mask=mask, seed=seed)
    assert len(result.rows) == 2 + 8 and result.ok, f"\n{result}"


def layer_cfg(norm_first, C=8, H=2, F=10):
    return TransformerConfig(src_vocab_size=5, tgt_vocab_size=5, d_model=C, nhead=H, dim_feedforward=F,
                             dropout=0.0, norm_first=norm_first, max_position_embeddings=8)


@settings(max_examples=8)
@given(dims=distinct_dims(exclude={8, 4, 10}, B=(1, 3), S=(2, 6)),   # distinct from C, D, F
       norm_first=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_encoder_layer_gradcheck(dims, norm_first, seed):
    B, S = dims["B"], dims["S"]
    rng = np.random.default_rng(seed)
    layer = EncoderLayer(layer_cfg(norm_first), np.float64, np.random.default_rng(seed), None)
    x = rng.standard_normal((B, S, 8))
    result = gradcheck(layer, x, key_mask=padding_mask(lengths_mask(rng, B, S)), seed=seed)
    assert result.ok, f"\n{result}"


@settings(max_examples=8)
@given(dims=distinct_dims(exclude={8, 4, 10}, B=(1, 3), T=(1, 5), S=(2, 7)),   # distinct from C, D, F
       norm_first=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_decoder_layer_gradcheck(dims, norm_first, seed):
    """Self-attention (causal + target padding), cross-attention, feed-forward: dy and dmemory."""
    B, T, S = dims["B"], dims["T"], dims["S"]
    rng = np.random.default_rng(seed)
    layer = DecoderLayer(layer_cfg(norm_first), np.float64, np.random.default_rng(seed), None)
    y, memory = rng.standard_normal((B, T, 8)), rng.standard_normal((B, S, 8))
    result = gradcheck(layer, y, memory, key_mask=padding_mask(lengths_mask(rng, B, T)),
                       memory_mask=padding_mask(lengths_mask(rng, B, S)), seed=seed)
    assert result.rows[0][0] == "input 0" and result.rows[1][0] == "input 1"
    assert result.ok, f"\n{result}"


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_gradcheck_and_value(eps):
    rng = np.random.default_rng(0)
    N, V = 7, 5
    logits = rng.standard_normal((N, V))
    targets = rng.integers(0, V, N)
    targets[[2, 5]] = -100

    def fwd(z):
        loss, cache = cross_entropy_forward(z, targets, label_smoothing=eps)
        return np.asarray(loss), cache

    result = gradcheck((fwd, lambda d, c: cross_entropy_backward(float(d), c)), logits)
    assert result.ok, f"\n{result}"
    # the value: the cross-entropy against the smoothed target (1 - eps) onehot + eps / V
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    keep = targets != -100
    q = np.full((N, V), eps / V)
    q[np.arange(N), np.where(keep, targets, 0)] += 1 - eps
    expected = -(q * logp).sum(-1)[keep].mean()
    loss = cross_entropy_forward(logits, targets, label_smoothing=eps)[0]
    assert loss == pytest.approx(expected, rel=1e-12)


@settings(max_examples=10)
@given(H=st.sampled_from([1, 2]), data=st.data(), norm_first=st.booleans(), share=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_whole_model_gradcheck_with_padding_at_the_end(H, data, norm_first, share, seed):
    """Source and target lengths differ, both are padded at the end, vocabularies differ
    (unless shared), label smoothing on."""
    dims = data.draw(distinct_dims(exclude={8, 8 // H, 12}, B=(1, 3), S=(2, 7), T=(2, 7)))   # C, D, F excluded
    B, S, T = dims["B"], dims["S"], dims["T"]
    rng = np.random.default_rng(seed)
    V_src, V_tgt = (12, 12) if share else (11, 13)
    model = tiny(seed, src_vocab_size=V_src, tgt_vocab_size=V_tgt, nhead=H, num_encoder_layers=1,
                 num_decoder_layers=2, norm_first=norm_first, share_embeddings=share)
    src = rng.integers(3, V_src, (B, S))
    src_mask = lengths_mask(rng, B, S)
    labels = np.where(lengths_mask(rng, B, T) == 1, rng.integers(3, V_tgt, (B, T)), -100)
    result = gradcheck(model, src, attention_mask=src_mask, labels=labels, max_elements=12, seed=seed)
    assert result.ok, f"\n{result}"


def test_shared_embeddings_are_one_parameter_collecting_three_uses():
    m = tiny(src_vocab_size=13, share_embeddings=True)
    names = [n for n, _ in m.named_parameters()]
    assert "encoder.embed_tokens.weight" in names and "decoder.embed_tokens.weight" not in names
    assert m.encoder.embed_tokens.weight is m.decoder.embed_tokens.weight
    result = gradcheck(m, [[3, 4, 5]], labels=[[6, 7]], max_elements=30)
    assert result.ok, f"\n{result}"


def test_float32_gradients_agree_with_float64():
    rng = np.random.default_rng(0)
    src, labels = rng.integers(3, 11, (2, 6)), rng.integers(3, 13, (2, 4))
    grads = {}
    for dtype in ("float32", "float64"):
        m = tiny(dtype=dtype)
        m(src, labels=labels)
        m.backward()
        grads[dtype] = {n: minilm.to_numpy(p.grad) for n, p in m.named_parameters()}
        assert all(p.grad.dtype == np.dtype(dtype) for p in m.parameters())
    for name, g64 in grads["float64"].items():
        assert np.abs(grads["float32"][name] - g64).max() <= 1e-4 * max(np.abs(g64).max(), 1e-3), name


# ---- an independent reference: torch.nn.Transformer (tests/fixtures/make_seq2seq_fixture.py) ----

def torch_names_to_minilm(tensors, C):
    """{torch name: array} -> {minilm name: array}: in_proj [W_q; W_k; W_v] (3C, C) split
    into q/k/v_proj and every nn.Linear weight (out, in) transposed to minilm's (in, out)."""
    out = {}
    for name, a in tensors.items():
        if name in ("src_embed.weight", "embed.weight"):
            out["encoder.embed_tokens.weight"] = a
            continue
        if name == "tgt_embed.weight":
            out["decoder.embed_tokens.weight"] = a
            continue
        name = name.removeprefix("transformer.")
        if name.endswith(".in_proj_weight") or name.endswith(".in_proj_bias"):
            stem, kind = name.rsplit(".in_proj_", 1)
            for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                part = a[i * C:(i + 1) * C]
                out[f"{stem}.{proj}.{kind}"] = part.T if kind == "weight" else part
            continue
        name = name.replace(".linear1.", ".ffn.linear1.").replace(".linear2.", ".ffn.linear2.")
        linear = ".out_proj." in name or ".linear1." in name or ".linear2." in name
        out[name] = a.T if linear and name.endswith(".weight") else a
    return out


def load_torch_fixture(case):
    folder = os.path.join(FIXTURES, case)
    with open(os.path.join(folder, "config.json")) as f:
        cfg = TransformerConfig.from_dict(json.load(f))
    model = Seq2SeqTransformer(cfg, dtype="float64")
    model.load_state_dict(torch_names_to_minilm(np.load(os.path.join(folder, "params.npz")), cfg.d_model))
    inputs = dict(np.load(os.path.join(folder, "inputs.npz")))
    outputs = dict(np.load(os.path.join(folder, "outputs.npz")))
    grads = torch_names_to_minilm(np.load(os.path.join(folder, "grads.npz")), cfg.d_model)
    return model, inputs, outputs, grads


def max_rel(a, ref):
    return float(np.abs(minilm.to_numpy(a) - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("case", ["seq2seq_postln", "seq2seq_preln"])
def test_forward_loss_and_gradients_match_torch_nn_transformer(case):
    """Post-LN (separate vocabularies, LayerNorm eps 1e-6, label smoothing 0.1) and pre-LN
    (one shared table, final LayerNorms), source and target padded at the end, causal mask:
    logits, encoder output, loss and every parameter gradient as torch computes them."""
    model, inputs, ref, ref_grads = load_torch_fixture(case)
    out = model(**inputs)
    assert max_rel(out.logits, ref["logits"]) <= 1e-10
    assert max_rel(out.encoder_last_hidden_state, ref["encoder_last_hidden_state"]) <= 1e-10
    assert float(out.loss) == pytest.approx(float(ref["loss"]), rel=1e-12)
    model.backward()
    params = dict(model.named_parameters())
    assert sorted(params) == sorted(ref_grads)
    total = math.sqrt(sum(float((g ** 2).sum()) for g in ref_grads.values()))   # key biases: exactly 0
    for name, p in params.items():
        assert grad_close(p.grad, ref_grads[name], rel=1e-9, floor=1e-6, total_norm=total), name


def test_the_torch_fixture_notices_a_missing_embedding_scale():
    """The comparison above can fail: without the sqrt(d_model) factor the logits move a lot."""
    model, inputs, ref, _ = load_torch_fixture("seq2seq_postln")
    model.encoder.scale = model.decoder.scale = 1.0
    assert max_rel(model(**inputs).logits, ref["logits"]) > 1e-2


# ---- the architecture's pieces -------------------------------------------------------------------

def test_sinusoidal_positions_are_the_papers():
    pe = sinusoidal_positions(np, 50, 8, np.float64)
    pos = np.arange(50)
    for i in range(4):
        np.testing.assert_allclose(pe[:, 2 * i], np.sin(pos / 10000 ** (2 * i / 8)), atol=1e-12)
        np.testing.assert_allclose(pe[:, 2 * i + 1], np.cos(pos / 10000 ** (2 * i / 8)), atol=1e-12)
    assert sinusoidal_positions(np, 4, 7, np.float32).shape == (4, 7)     # odd width works


def test_shift_tokens_right():
    labels = np.array([[5, 6, 7, 2], [8, 2, -100, -100]])
    np.testing.assert_array_equal(shift_tokens_right(labels, 0, 1), [[1, 5, 6, 7], [1, 8, 2, 0]])


def test_labels_are_shifted_inside_and_padding_is_ignored():
    m = tiny()
    src = np.array([[3, 4, 5, 6], [7, 8, 0, 0]])
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    labels = np.array([[5, 6, 7, 2], [8, 2, -100, -100]])
    a = m(src, attention_mask=mask, labels=labels)
    b = m(src, attention_mask=mask, decoder_input_ids=[[1, 5, 6, 7], [1, 8, 2, 0]], labels=labels)
    assert a.loss == b.loss and a.encoder_last_hidden_state.shape == (2, 4, 8)
    # the source's padding ids do not matter when masked; the target's trailing pads neither
    c = m([[3, 4, 5, 6], [7, 8, 9, 10]], attention_mask=mask,
          decoder_input_ids=[[1, 5, 6, 7], [1, 8, 2, 12]], labels=labels)
    assert c.loss == pytest.approx(a.loss, rel=1e-12)
    np.testing.assert_allclose(minilm.to_numpy(c.logits[1, :2]), minilm.to_numpy(a.logits[1, :2]),
                               rtol=1e-12, atol=1e-12)


def test_dropout_is_random_in_training_and_off_in_eval():
    m = tiny(dropout=0.3)
    src, labels = [[3, 4, 5]], [[6, 7, 2]]
    m.train()
    assert m(src, labels=labels).loss != m(src, labels=labels).loss
    m.eval()
    assert m(src, labels=labels).loss == m(src, labels=labels).loss


# ---- the copy and reverse tasks ----------------------------------------------------------------

def train_symbol_task(reverse, steps, seed=0, L=1, lr=6e-3, batch_size=32):
    V, N = 13, 8
    m = tiny(seed, dtype="float32", src_vocab_size=V, tgt_vocab_size=V, d_model=32, nhead=4,
             num_encoder_layers=L, num_decoder_layers=L, dim_feedforward=64, label_smoothing=0.0,
             share_embeddings=True)
    opt = AdamW(m.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        opt.param_groups[0]["lr"] = noam(step + 1, 32, 50, factor=lr * (32 * 50) ** 0.5)
        m.zero_grad()
        m(**copy_batch(rng, batch_size, N, V, reverse=reverse))
        m.backward()
        opt.step()
    return m


def symbol_accuracy(m, reverse, n=200, seed=123):
    b = copy_batch(np.random.default_rng(seed), n, 8, 13, reverse=reverse)
    out = m.generate(b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=9)
    right = 0
    for row, lab in zip(out, b["labels"]):
        ref = [int(t) for t in lab if t != -100]                           # symbols + EOS
        right += list(row[1:1 + len(ref)]) == ref
    return right / n


@pytest.fixture(scope="module")
def copy_model():
    return train_symbol_task(reverse=False, steps=600, batch_size=64)


@pytest.fixture(scope="module")
def reverse_model():
    return train_symbol_task(reverse=True, steps=1500)


def test_learns_the_copy_task(copy_model):
    assert symbol_accuracy(copy_model, reverse=False) >= 0.95


def test_learns_the_reverse_task(reverse_model):
    assert symbol_accuracy(reverse_model, reverse=True) >= 0.95


# ---- decoding --------------------------------------------------------------------------------

def sources(seed=0, B=6, S=7, V=11):
    rng = np.random.default_rng(seed)
    mask = lengths_mask(rng, B, S, low=2)
    return np.where(mask == 1, rng.integers(3, V, (B, S)), 0), mask


@pytest.mark.parametrize("norm_first", [False, True])
def test_cached_decoding_matches_teacher_forcing(norm_first):
    """Feeding the target one token at a time through the cache gives the same logits as
    the full forward pass, position by position."""
    m = tiny(norm_first=norm_first)
    src, mask = sources()
    tgt = np.random.default_rng(1).integers(3, 13, (src.shape[0], 6))
    full = minilm.to_numpy(m(src, attention_mask=mask, decoder_input_ids=tgt).logits)
    memory, src_mask = m.encode(src, mask)
    cache = m.init_decoder_cache(memory, 6)
    for t in range(6):
        step = minilm.to_numpy(m.decode_step(tgt[:, t:t + 1], cache, t, src_mask))
        np.testing.assert_allclose(step, full[:, t], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_cache_and_no_cache_give_the_same_output(norm_first, num_beams):
    m = tiny(norm_first=norm_first)
    src, mask = sources()
    kw = dict(attention_mask=mask, max_new_tokens=10, num_beams=num_beams, return_dict_in_generate=True)
    a, b = m.generate(src, use_cache=True, **kw), m.generate(src, use_cache=False, **kw)
    np.testing.assert_array_equal(a.sequences, b.sequences)
    np.testing.assert_allclose(a.sequences_scores, b.sequences_scores, rtol=1e-10)


def test_cache_and_no_cache_agree_on_a_trained_model(reverse_model):
    b = copy_batch(np.random.default_rng(5), 30, 8, 13, reverse=True)
    for num_beams in (1, 4):
        kw = dict(attention_mask=b["attention_mask"], max_new_tokens=10, num_beams=num_beams)
        np.testing.assert_array_equal(reverse_model.generate(b["input_ids"], use_cache=True, **kw),
                                      reverse_model.generate(b["input_ids"], use_cache=False, **kw))


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_width_one_is_greedy(length_penalty, reverse_model):
    from minilm.beam_search import beam_search
    for m, (src, mask) in ((tiny(), sources()), (reverse_model, sources(V=13))):
        greedy = m.generate(src, attention_mask=mask, max_new_tokens=10, length_penalty=length_penalty,
                            return_dict_in_generate=True)
        memory, src_mask = m.encode(src, mask)
        seqs, scores = beam_search(m, memory, src_mask, 1, 10, length_penalty)
        np.testing.assert_array_equal(seqs, greedy.sequences)
        np.testing.assert_allclose(scores, greedy.sequences_scores, rtol=1e-12)


@pytest.fixture(scope="module")
def partly_trained_model():
    """Reverse task, stopped early (about 40% of sequences right): unsure enough that the
    search matters."""
    return train_symbol_task(reverse=True, steps=250)


@pytest.mark.parametrize("length_penalty", [0.0, 0.6, 1.0])
def test_larger_beams_never_score_worse_than_greedy(length_penalty, partly_trained_model):
    """Over 100 sources: score = log p(output) / len ** alpha, recomputed by teacher forcing
    (independent of the search's bookkeeping). Beam search is not guaranteed to beat greedy
    in general (greedy's prefix can fall out of the beam), but on this model it never loses
    and often wins."""
    m = partly_trained_model
    b = copy_batch(np.random.default_rng(7), 100, 8, 13, reverse=True)
    src, mask = b["input_ids"], b["attention_mask"]
    scores = {}
    for K in (1, 2, 4):
        out = m.generate(src, attention_mask=mask, max_new_tokens=10, num_beams=K,
                         length_penalty=length_penalty, return_dict_in_generate=True)
        rescored = m.score_sequences(src, out.sequences, attention_mask=mask, length_penalty=length_penalty)
        np.testing.assert_allclose(rescored, out.sequences_scores, rtol=1e-5, atol=1e-5)
        scores[K] = rescored
    for K in (2, 4):
        assert (scores[K] >= scores[1] - 1e-5).all()
        assert (scores[K] > scores[1] + 1e-4).sum() >= 10           # the test is not vacuous


def test_beam_search_finishes_at_eos_and_pads():
    m = tiny()
    src, mask = sources()
    out = m.generate(src, attention_mask=mask, max_new_tokens=12, num_beams=3)
    assert (out[:, 0] == 1).all()                                          # BOS first
    for row in out:
        eos = np.nonzero(row == 2)[0]
        if eos.size:
            assert (row[eos[0] + 1:] == 0).all()                           # padding after EOS


def test_generate_infers_the_source_mask_from_padding():
    m = tiny()
    src, mask = sources()
    np.testing.assert_array_equal(m.generate(src, max_new_tokens=6),
                                  m.generate(src, attention_mask=mask, max_new_tokens=6))


# ---- checkpoints -------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_first, share", [(False, False), (True, True)])
def test_save_pretrained_roundtrip(tmp_path, norm_first, share):
    m = tiny(dtype="float32", src_vocab_size=13, norm_first=norm_first, share_embeddings=share)
    m.save_pretrained(tmp_path)
    cfg = json.load(open(tmp_path / "config.json"))
    assert cfg["model_type"] == "minilm-seq2seq" and cfg["d_model"] == 8 and cfg["norm_first"] == norm_first
    m2 = Seq2SeqTransformer.from_pretrained(tmp_path)
    src, labels = [[3, 4, 5, 6]], [[7, 8, 2]]
    a, b = m(src, labels=labels), m2(src, labels=labels)
    np.testing.assert_array_equal(minilm.to_numpy(a.logits), minilm.to_numpy(b.logits))
    assert (m2.encoder.embed_tokens.weight is m2.decoder.embed_tokens.weight) == share


def test_from_pretrained_rejects_other_models(tmp_path):
    GPT(GPTConfig(vocab_size=10, n_positions=8, n_embd=8, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="minilm-seq2seq"):
        Seq2SeqTransformer.from_pretrained(tmp_path)


# ---- bad input: a clear error, never a wrong answer ----------------------------------------------

def test_bad_inputs():
    m = tiny()
    src = [[3, 4, 5]]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m(src, labels=[[3, 13]])                                           # target id out of range
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m(src, decoder_input_ids=[[1, -2]])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m([[3, 11]], labels=[[3]])                                         # source id out of range
    with pytest.raises(ValueError, match="empty"):
        m([[]], labels=[[3]])
    with pytest.raises(ValueError, match="empty"):
        m.generate([[]])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        m([list(range(3, 11)) * 3], labels=[[3]])                          # 24 > 16
    with pytest.raises(ValueError, match="max_position_embeddings"):
        m.generate([list(range(3, 11)) * 3])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        m(src, labels=[[3] * 17])
    with pytest.raises(ValueError, match="all padding"):
        m([[3, 4], [5, 6]], attention_mask=[[1, 1], [0, 0]], labels=[[3], [4]])
    with pytest.raises(ValueError, match="attention_mask shape"):
        m(src, attention_mask=[[1, 1]], labels=[[3]])
    with pytest.raises(ValueError, match="batch sizes"):
        m(src, labels=[[3], [4]])
    with pytest.raises(ValueError, match="labels shape"):
        m(src, decoder_input_ids=[[1, 3]], labels=[[3]])
    with pytest.raises(ValueError, match="decoder_input_ids or labels"):
        m(src)
    with pytest.raises(TypeError, match="integers"):
        m([[3.0, 4.0]], labels=[[3]])


@pytest.mark.parametrize("num_beams", [0, -1, 1.5, True])
def test_beam_width_below_one_is_an_error(num_beams):
    with pytest.raises(ValueError, match="num_beams"):
        tiny().generate([[3, 4, 5]], num_beams=num_beams)


def test_generation_limits():
    m = tiny()
    with pytest.raises(ValueError, match="max_new_tokens"):
        m.generate([[3, 4]], max_new_tokens=17)
    with pytest.raises(ValueError, match="max_new_tokens"):
        m.generate([[3, 4]], max_new_tokens=-1)
    assert m.generate([[3, 4]], max_new_tokens=0).tolist() == [[1]]
    assert m.generate([[3, 4]], max_new_tokens=3, num_beams=2).shape[1] <= 4


def test_backward_needs_a_loss():
    m = tiny()
    with pytest.raises(RuntimeError, match="labels"):
        m.backward()
    m([[3, 4]], decoder_input_ids=[[1, 5]])
    with pytest.raises(RuntimeError, match="labels"):
        m.backward()


def test_config_errors():
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(d_model=10, nhead=3)
    with pytest.raises(ValueError, match="share_embeddings"):
        TransformerConfig(src_vocab_size=10, tgt_vocab_size=12, share_embeddings=True)
    with pytest.raises(ValueError, match="positive"):
        TransformerConfig(num_encoder_layers=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        TransformerConfig(label_smoothing=1.0)
    with pytest.raises(ValueError, match="eos_token_id"):
        TransformerConfig(tgt_vocab_size=2, src_vocab_size=2)


# ---- the generated data -----------------------------------------------------------------------

def test_translation_grammar_examples():
    rng = np.random.default_rng(0)
    pairs = dict(make_translation_pair(rng) for _ in range(3000))
    for en, fr in pairs.items():
        assert len(en.split()) <= 18 and len(fr.split()) <= 18
        if " not " in f" {en} ":
            assert fr.split().count("pas") == 1 and ("ne" in fr.split() or "n'" in fr.split())
    words = " ".join(pairs.values()).split()
    for w in ("l'", "n'", "du", "des", "vieil", "chevaux", "mon"):        # the rules do fire
        assert w in words, w
    again = make_splits(make_translation_pair, (5, 3), seed=4)
    assert make_splits(make_translation_pair, (5, 3), seed=4) == again


def test_splits_are_disjoint_and_batches_padded():
    train, valid, test = make_splits(make_headline_pair, (300, 50, 50), seed=1)
    assert not {s for s, _ in train} & {s for s, _ in test}
    assert not {s for s, _ in valid} & {s for s, _ in test}
    data = Seq2SeqData(train, valid, test, batch_size=8)
    batch = data.train_batch(np.random.default_rng(0))
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert ((batch["labels"] == -100) | (batch["labels"] >= 0)).all()
    rows_end = [row[row != -100][-1] for row in batch["labels"]]
    assert all(t == data.tgt_vocab.eos_id for t in rows_end)               # every target ends in EOS
    v = Vocab.build(["a b c"])
    assert v.decode(v.encode("c a", add_eos=True) + [v.stoi["b"]]) == "c a"
    b = seq2seq_batch([[5, 6, 7], [5]], [[8, 2], [9, 9, 2]])
    assert b["labels"].tolist() == [[8, 2, -100], [9, 9, 2]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_task_runs_end_to_end(tmp_path, monkeypatch):
    """The command-line path on a shrunken recipe: trains, decodes, scores, writes its folder."""
    import dataclasses

    from minilm import seq2seq_tasks
    small = dataclasses.replace(seq2seq_tasks.RECIPES["summarize"], sizes=(200, 20, 20), d_model=16,
                                nhead=2, num_layers=1, dim_feedforward=16, batch_size=8)
    monkeypatch.setitem(seq2seq_tasks.RECIPES, "summarize", small)
    assert seq2seq_tasks.main(["summarize", "--steps", "3", "--out", str(tmp_path), "--no-progress",
                               "--beams", "2"]) == 0
    results = json.load(open(tmp_path / "results.json"))
    assert {"rouge1", "rouge2", "rougeL", "exact_match", "train_seconds"} <= set(results)
    for name in ("loss.png", "samples.txt", "vocab.json", "model/config.json", "model/model.safetensors"):
        assert (tmp_path / name).exists(), name
    model, src_vocab, tgt_vocab = seq2seq_tasks.load_run(tmp_path)
    assert model.config.src_vocab_size == len(src_vocab)
