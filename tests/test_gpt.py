"""GPT-2: parity with `transformers` fixtures, whole-model gradient checks, generation,
checkpoints, and clear errors for bad input."""
import json
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minilm
from minilm.check import gradcheck
from minilm.generate import filter_logits
from minilm.io import load_safetensors, save_safetensors
from minilm.models import GPT, GPTConfig

from conftest import FIXTURES, grad_close

CASES = ["gpt2_tiny_a", "gpt2_tiny_b"]


def load_case(case, dtype="float64"):
    folder = os.path.join(FIXTURES, case)
    cfg = GPTConfig.from_dict(json.load(open(os.path.join(folder, "config.json"))))
    model = GPT(cfg, dtype=dtype)
    model.load_state_dict(dict(np.load(os.path.join(folder, "params.npz"))))
    arrays = {n: dict(np.load(os.path.join(folder, f"{n}.npz"))) for n in ("inputs", "outputs", "grads", "generate")}
    return model, arrays


def tiny(seed=0, dtype="float64", **kw):
    cfg = dict(vocab_size=13, n_positions=12, n_embd=8, n_layer=2, n_head=2, initializer_range=0.3,
               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, seed=seed)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg), dtype=dtype)


@pytest.mark.parametrize("case", CASES)
def test_matches_transformers_logits_loss_and_every_gradient(case):
    model, a = load_case(case)
    inp, ref = a["inputs"], a["outputs"]
    out = model(inp["input_ids"], attention_mask=inp["attention_mask"], labels=inp["labels"])
    logits = minilm.to_numpy(out.logits)
    assert np.abs(logits - ref["logits"]).max() <= 1e-10 * np.abs(ref["logits"]).max()
    assert out.loss == pytest.approx(float(ref["loss"]), rel=1e-10)
    model.zero_grad()
    model.backward()
    grads = a["grads"]
    total = np.sqrt(sum((g ** 2).sum() for g in grads.values()))
    names = dict(model.named_parameters())
    assert set(names) == set(grads), "every parameter must have a reference gradient"
    for name, p in names.items():
        assert grad_close(p.grad, grads[name], rel=1e-10, total_norm=total), name


@pytest.mark.parametrize("case", CASES)
def test_greedy_generation_matches_transformers(case):
    model, a = load_case(case)
    g = a["generate"]
    n_new = g["greedy"].shape[1] - g["prompt"].shape[1]
    for use_cache in (True, False):
        out = model.generate(g["prompt"], max_new_tokens=n_new, use_cache=use_cache)
        np.testing.assert_array_equal(out, g["greedy"])


@given(B=st.integers(1, 3), T=st.integers(2, 7), L=st.integers(1, 2), H=st.sampled_from([1, 2, 4]),
       seed=st.integers(0, 2**31 - 1))
def test_whole_gpt_gradcheck_with_padding_at_the_end(B, T, L, H, seed):
    rng = np.random.default_rng(seed)
    model = tiny(seed, vocab_size=11, n_positions=9, n_embd=8, n_layer=L, n_head=H)
    ids = rng.integers(0, 11, (B, T))
    lengths = rng.integers(2, T + 1, B)
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.int64)
    labels = np.where(mask == 1, ids, -100)
    result = gradcheck(model, ids, attention_mask=mask, labels=labels, max_elements=40, seed=seed)
    assert result.ok, f"\n{result}"


def test_float32_gradients_agree_with_float64():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 13, (2, 9))
    grads = {}
    for dtype in ("float32", "float64"):
        m = tiny(dtype=dtype)
        m(ids, labels=ids)
        m.backward()
        grads[dtype] = {n: minilm.to_numpy(p.grad) for n, p in m.named_parameters()}
        assert all(p.grad.dtype == np.dtype(dtype) for p in m.parameters())
    for name, g64 in grads["float64"].items():
        g32 = grads["float32"][name]
        assert np.abs(g32 - g64).max() <= 1e-4 * max(np.abs(g64).max(), 1e-3), name


def test_tied_head_collects_both_gradient_contributions():
    """wte is used twice (input lookup, output projection); its gradient is exactly the sum of
    the head's dlogits^T h and the lookup's scatter-add of the embedding output's gradient."""
    from minilm.losses import cross_entropy_backward
    m = tiny()
    assert "lm_head.weight" not in dict(m.named_parameters())
    ids = np.array([[1, 2, 3, 2, 5]])                      # token 2 twice: the lookup accumulates
    out = m(ids, labels=ids)
    ce_cache, (B, T, V) = m._loss_cache
    dlogits = np.zeros((B, T, V))
    dlogits[:, :-1] = minilm.to_numpy(cross_entropy_backward(1.0, ce_cache)).reshape(B, T - 1, V)
    h = minilm.to_numpy(m._head_cache[0]).copy()           # ln_f's output, the head's input (B, T, C)
    m.backward()
    both = minilm.to_numpy(m.transformer.wte.weight.grad).copy()
    head_only = np.einsum("btv,btc->vc", dlogits, h)
    # the gradient reaching x = wte[ids] + wpe[0:T] is wpe's gradient too (one sequence: B = 1)
    dx = minilm.to_numpy(m.transformer.wpe.weight.grad[:T])
    lookup_only = np.zeros_like(both)
    np.add.at(lookup_only, ids[0], dx)
    assert np.abs(head_only).max() > 1e-3 and np.abs(lookup_only).max() > 1e-3   # both matter
    np.testing.assert_allclose(both, head_only + lookup_only, rtol=1e-12, atol=1e-14)
    assert out.loss > 0
    m(ids, labels=ids)                                     # a second backward adds, both parts
    m.backward()
    np.testing.assert_allclose(minilm.to_numpy(m.transformer.wte.weight.grad), 2 * both, rtol=1e-12, atol=1e-14)


def test_overfits_two_sequences():
    from minilm.optim import AdamW
    m = tiny(dtype="float32")
    ids = np.array([[1, 5, 2, 7, 3, 9, 4, 11], [12, 0, 6, 8, 10, 2, 3, 1]])
    opt = AdamW(m.parameters(), lr=1e-2, weight_decay=0.0)
    first = None
    for _ in range(60):
        out = m(ids, labels=ids)
        first = first if first is not None else out.loss
        m.zero_grad()
        m.backward()
        opt.step()
    assert out.loss < 0.1 * first


def test_kv_cache_sampling_is_token_for_token_identical():
    m = tiny(dtype="float32", n_positions=40)
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    kw = dict(max_new_tokens=25, do_sample=True, temperature=0.8, top_k=6, top_p=0.9, seed=123)
    np.testing.assert_array_equal(m.generate(prompt, use_cache=True, **kw), m.generate(prompt, use_cache=False, **kw))
    a = m.generate(prompt, max_new_tokens=5, do_sample=True, seed=1)
    b = m.generate(prompt, max_new_tokens=5, do_sample=True, seed=1)
    np.testing.assert_array_equal(a, b)


def test_top_k_and_top_p_filters():
    logits = np.log(np.array([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    z = filter_logits(logits, top_k=2)
    assert np.isfinite(z).sum() == 2 and np.isfinite(z[0, :2]).all()
    z = filter_logits(logits, top_p=0.6)                   # 0.5 < 0.6, so the 0.2 token joins
    assert np.isfinite(z[0]).tolist() == [True, True, False, False, False]
    z = filter_logits(logits, top_p=0.01)                  # always at least the best token
    assert np.isfinite(z[0]).tolist() == [True, False, False, False, False]
    with pytest.raises(ValueError):
        filter_logits(logits, temperature=0)


def test_eos_stops_generation():
    m = tiny(n_positions=30)
    greedy = m.generate([[1, 2]], max_new_tokens=10)
    eos = int(greedy[0, 4])
    out = m.generate([[1, 2]], max_new_tokens=10, eos_token_id=eos)
    assert out[0, -1] == eos and out.shape[1] <= 5


def test_save_pretrained_roundtrip(tmp_path):
    m = tiny(dtype="float32")
    m.save_pretrained(tmp_path)
    cfg = json.load(open(tmp_path / "config.json"))
    assert cfg["model_type"] == "gpt2" and cfg["n_embd"] == 8
    tensors = load_safetensors(tmp_path / "model.safetensors")
    assert "transformer.h.0.attn.c_attn.weight" in tensors and tensors["transformer.h.0.attn.c_attn.weight"].shape == (8, 24)
    m2 = GPT.from_pretrained(tmp_path)
    ids = np.array([[3, 1, 4, 1, 5]])
    np.testing.assert_array_equal(minilm.to_numpy(m(ids).logits), minilm.to_numpy(m2(ids).logits))


def test_loads_hf_names_without_prefix_and_ignores_buffers(tmp_path):
    """Real GPT-2 files name keys `h.0...` (no `transformer.`) and may carry `attn.bias` buffers."""
    m = tiny()
    sd = {k.replace("transformer.", "", 1): v for k, v in m.state_dict().items()}
    sd["h.0.attn.bias"] = np.tril(np.ones((1, 1, 12, 12), np.float32))
    m.save_pretrained(tmp_path)
    save_safetensors(tmp_path / "model.safetensors", sd)
    m2 = GPT.from_pretrained(tmp_path, dtype="float64")
    np.testing.assert_array_equal(minilm.to_numpy(m2.transformer.wte.weight.data),
                                  minilm.to_numpy(m.transformer.wte.weight.data))


# ---- bad input: a clear error, never a wrong answer ----------------------------------------

@pytest.mark.parametrize("ids, err, match", [
    ([[1, 2, 13]], ValueError, "outside the vocabulary"),
    ([[1, -1, 2]], ValueError, "outside the vocabulary"),
    ([[1.0, 2.0]], TypeError, "integers"),
    ([1, 2, 3], ValueError, "2-D"),
    ([[[1, 2]]], ValueError, "2-D"),
    ([list(range(13))], ValueError, "n_positions"),
    ([[]], ValueError, "empty"),
])
def test_bad_input_ids(ids, err, match):
    m = tiny()
    with pytest.raises(err, match=match):
        m(np.array(ids) if not isinstance(ids[0], list) or ids != [[]] else ids)


def test_bad_labels_and_masks():
    m = tiny()
    ids = np.array([[1, 2, 3]])
    with pytest.raises(ValueError, match="labels shape"):
        m(ids, labels=np.array([[1, 2]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m(ids, labels=np.array([[1, 2, 99]]))
    with pytest.raises(ValueError, match="attention_mask shape"):
        m(ids, attention_mask=np.array([[1, 1]]))
    m(ids, labels=np.array([[1, -100, 3]]))                   # -100 is fine


def test_config_errors():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="positive"):
        GPTConfig(n_layer=0)
    with pytest.raises(ValueError, match="dropout|resid_pdrop"):
        GPTConfig(resid_pdrop=1.5)


def test_backward_before_forward_and_without_labels():
    m = tiny()
    with pytest.raises(RuntimeError, match="labels"):
        m.backward()
    m(np.array([[1, 2]]))
    with pytest.raises(RuntimeError, match="labels"):
        m.backward()


def test_generate_past_the_context_is_an_error():
    m = tiny()
    with pytest.raises(ValueError, match="n_positions"):
        m.generate([[1, 2, 3]], max_new_tokens=10)
    out = m.generate([[1, 2, 3]], max_new_tokens=15, use_cache=False, crop=True)
    assert out.shape == (1, 18)


def test_checkpoint_errors(tmp_path):
    m = tiny()
    with pytest.raises(FileNotFoundError, match="not found"):
        GPT.from_pretrained(tmp_path / "nope")
    m.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])                          # truncated
    with pytest.raises(ValueError, match="truncated"):
        GPT.from_pretrained(tmp_path)
    path.write_bytes(b"\x05\x00")                                     # garbage
    with pytest.raises(ValueError, match="safetensors"):
        GPT.from_pretrained(tmp_path)
    os.remove(path)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        GPT.from_pretrained(tmp_path)
    # a checkpoint for a different shape of model
    tiny(n_embd=6, n_head=2).save_pretrained(tmp_path / "other")
    cfg = json.load(open(tmp_path / "other" / "config.json"))
    cfg["n_embd"] = 8
    json.dump(cfg, open(tmp_path / "other" / "config.json", "w"))
    with pytest.raises(ValueError, match="shape mismatch"):
        GPT.from_pretrained(tmp_path / "other")
    cfg["model_type"] = "bert"
    json.dump(cfg, open(tmp_path / "other" / "config.json", "w"))
    with pytest.raises(ValueError, match="'bert'"):
        GPT.from_pretrained(tmp_path / "other")


def test_missing_keys_are_named(tmp_path):
    m = tiny()
    sd = m.state_dict()
    del sd["transformer.ln_f.bias"]
    with pytest.raises(KeyError, match="ln_f.bias"):
        m.load_state_dict(sd)


def test_dropout_is_seeded_and_off_in_eval():
    m = tiny(resid_pdrop=0.3, embd_pdrop=0.3, attn_pdrop=0.3)
    ids = np.array([[1, 2, 3, 4]])
    a = minilm.to_numpy(m(ids).logits)
    b = minilm.to_numpy(m(ids).logits)
    assert not np.allclose(a, b)                                       # training: fresh masks
    m.eval()
    np.testing.assert_array_equal(minilm.to_numpy(m(ids).logits), minilm.to_numpy(m(ids).logits))
    m2, m3 = tiny(resid_pdrop=0.3), tiny(resid_pdrop=0.3)
    np.testing.assert_array_equal(minilm.to_numpy(m2(ids).logits), minilm.to_numpy(m3(ids).logits))
