"""Nothing lost, nothing silent: crash-safe checkpoints, checksums, all-or-nothing loads, and
clear errors for bad configs, masks, generate arguments, dtypes and files.

The fault-injection machinery lives in tests/reliability_table.py (which also prints the
table in BENCHMARKS.md); here it is asserted on. The whole file runs in well under a minute.
"""
import hashlib
import json
import os
import shutil
import warnings

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import minilm
import reliability_table as rt
from minilm.io import ChecksumError, load_safetensors, read_safetensors_header, save_safetensors
from minilm.models import (BertConfig, BertForMaskedLM, BertForPreTraining,
                           BertForSequenceClassification, BertForTokenClassification, BertModel,
                           GPT, GPTConfig, Seq2SeqTransformer, TransformerConfig)
from minilm.ops import layernorm_backward, layernorm_forward
from minilm.optim import SGD, AdamW
from minilm.train import Trainer, latest_checkpoint

IDS = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])


def gpt(seed=0):
    return rt._gpt(seed)


def bert_config(**kw):
    return BertConfig(**{**dict(vocab_size=24, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=16, max_position_embeddings=8), **kw})


def seq2seq(seed=0):
    return rt._seq2seq(seed)


def same_state(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---- crash safety ---------------------------------------------------------------------------

KINDS = {k.name: k for k in rt.all_kinds()}


@pytest.mark.parametrize("name", list(KINDS))
def test_a_crash_at_every_file_system_step_leaves_the_old_or_the_new_checkpoint(name):
    results, calls = rt.fault_campaign(KINDS[name], crash=True)
    assert calls >= 5 and len(results) == calls
    outcomes = [o for _, o, _ in results]
    assert set(outcomes) <= {"old", "new"}, [r for r in results if r[1] not in ("old", "new")]
    assert all(raised == "Crash" for _, _, raised in results)
    # both sides of the swap were hit: early crashes keep the old one, late ones the new
    assert outcomes[0] == "old" and outcomes[-1] == "new"


@pytest.mark.parametrize("name", ["GPT.save_pretrained", "Trainer checkpoint (last/)"])
def test_an_io_error_at_any_step_raises_and_keeps_a_whole_checkpoint(name):
    results, _ = rt.fault_campaign(KINDS[name], crash=False)
    for k, outcome, raised in results:
        if raised is None:              # the error was handled (say, by makedirs(exist_ok))
            assert outcome == "new", (k, outcome)
        else:
            assert outcome in ("old", "new"), (k, outcome)
    assert sum(raised is not None and outcome == "old" for _, outcome, raised in results) >= 5


@pytest.mark.parametrize("kind", rt.before_kinds(), ids=lambda k: k.name)
def test_the_campaign_catches_the_writers_that_were_not_crash_safe(kind):
    results, _ = rt.fault_campaign(kind, crash=True)
    assert any(o.startswith(("mixed", "lost")) for _, o, _ in results)


def test_kill_9_during_saves_always_leaves_a_loadable_checkpoint():
    for delay, model_outcome, trainer_outcome in rt.kill_trials(n=3, seed=1):
        assert model_outcome in ("old", "new") and trainer_outcome in ("old", "new"), delay


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE and SIGXFSZ are POSIX")
@pytest.mark.parametrize("name", ["GPT.save_pretrained", "Trainer checkpoint (last/)"])
def test_a_full_disk_raises_and_keeps_the_previous_checkpoint(name):
    said, outcome = rt.full_disk_trial(name)
    assert said.startswith("raised OSError") and "File too large" in said, said
    assert outcome == "old"


def test_a_folder_left_aside_by_an_interrupted_save_is_found(tmp_path):
    m = gpt()
    m.save_pretrained(tmp_path / "m")
    os.rename(tmp_path / "m", tmp_path / "m.old")          # died between the two renames
    with pytest.warns(RuntimeWarning, match="interrupted save"):
        back = GPT.from_pretrained(tmp_path / "m")
    assert same_state(back.state_dict(), m.state_dict())
    gpt(1).save_pretrained(tmp_path / "m")                 # the next save cleans up
    assert sorted(os.listdir(tmp_path)) == ["m"]
    assert same_state(GPT.from_pretrained(tmp_path / "m").state_dict(), gpt(1).state_dict())


def test_saving_a_model_keeps_a_tokenizer_in_the_same_folder_and_back(tmp_path):
    tok = rt._tokenizer(0)
    tok.save_pretrained(tmp_path)
    gpt().save_pretrained(tmp_path)
    assert {"vocab.txt", "tokenizer_config.json", "config.json", "model.safetensors"} <= set(os.listdir(tmp_path))
    rt._tokenizer(1).save_pretrained(tmp_path)
    assert same_state(GPT.from_pretrained(tmp_path).state_dict(), gpt().state_dict())
    assert minilm.tokenizers.BertTokenizer.from_pretrained(tmp_path).vocab == rt._tokenizer(1).vocab


def test_saving_over_a_folder_keeps_its_sub_folders_and_symlinks(tmp_path):
    (tmp_path / "m" / "checkpoint-5").mkdir(parents=True)
    (tmp_path / "m" / "checkpoint-5" / "notes.txt").write_text("kept")
    (tmp_path / "m" / "link").symlink_to(tmp_path / "elsewhere")
    gpt().save_pretrained(tmp_path / "m")
    gpt(1).save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "checkpoint-5" / "notes.txt").read_text() == "kept"
    assert os.readlink(tmp_path / "m" / "link") == str(tmp_path / "elsewhere")
    assert GPT.from_pretrained(tmp_path / "m").config.seed == 1


def test_saving_through_a_symlinked_folder_keeps_the_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    gpt().save_pretrained(tmp_path / "link")
    gpt(1).save_pretrained(tmp_path / "link")
    assert os.path.islink(tmp_path / "link") and sorted(os.listdir(tmp_path)) == ["link", "real"]
    assert GPT.from_pretrained(tmp_path / "real").config.seed == 1


def test_saving_into_the_working_folder_replaces_the_files_in_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("kept")
    gpt().save_pretrained(".")
    gpt(1).save_pretrained(".")
    assert sorted(os.listdir(tmp_path)) == ["config.json", "mine.txt", "model.safetensors"]
    assert same_state(GPT.from_pretrained(".").state_dict(), gpt(1).state_dict())


def test_a_bpe_vocab_changed_behind_its_config_is_refused(tmp_path):
    rt._bpe(0).save(str(tmp_path / "tok"))
    rt._bpe(1).save(str(tmp_path / "other"))
    shutil.copy(tmp_path / "other-vocab.json", tmp_path / "tok-vocab.json")
    with pytest.raises(ValueError, match="tok-vocab.json does not match the sha256"):
        minilm.tokenizers.BPETokenizer.load(str(tmp_path / "tok"))


# ---- checksums ------------------------------------------------------------------------------

def test_each_tensor_carries_its_sha256_and_format_pt(tmp_path):
    m = gpt()
    m.save_pretrained(tmp_path)
    meta = read_safetensors_header(tmp_path / "model.safetensors")["__metadata__"]
    assert meta["format"] == "pt"                          # transformers refuses anything else
    for name, array in m.state_dict().items():
        le = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"))
        assert meta["minilm.sha256." + name] == hashlib.sha256(le.tobytes()).hexdigest()


def test_a_flipped_byte_is_caught_and_the_tensor_named(tmp_path):
    gpt().save_pretrained(tmp_path)
    name = rt._flip_byte(str(tmp_path), "transformer.h.0.mlp.c_fc.weight")
    with pytest.raises(ChecksumError, match=r"tensor 'transformer\.h\.0\.mlp\.c_fc\.weight'"):
        GPT.from_pretrained(tmp_path)
    assert name == "transformer.h.0.mlp.c_fc.weight"
    assert len(load_safetensors(tmp_path / "model.safetensors", verify=False)) > 0


def test_a_checkpoint_without_digests_still_loads(tmp_path):
    m = gpt()
    minilm.io.write_config(str(tmp_path), m.config.to_dict())
    safetensors.numpy.save_file(m.state_dict(), str(tmp_path / "model.safetensors"),
                                metadata={"format": "pt"})
    assert same_state(GPT.from_pretrained(tmp_path).state_dict(), m.state_dict())


def test_latest_checkpoint_skips_corrupt_and_incomplete_checkpoints(tmp_path):
    m = gpt()
    t = Trainer(m, AdamW(m.parameters()), lambda r: None, max_steps=9, progress=False,
                checkpoint_dir=str(tmp_path))
    paths = []
    for step in (1, 2, 3, 4):
        t.step = step
        paths.append(t.save_checkpoint())
    assert latest_checkpoint(tmp_path) == paths[3]
    rt._flip_byte(paths[3])                                 # newest: a changed weight
    with open(os.path.join(paths[2], "trainer_state.json"), "w") as f:
        f.write('{"step": 3, "hist')                       # next: truncated JSON
    os.remove(os.path.join(paths[1], "optimizer.json"))     # next: a missing file
    with pytest.warns(RuntimeWarning, match="skipping checkpoint"):
        assert latest_checkpoint(tmp_path) == paths[0]
    with pytest.raises(ChecksumError):
        t.resume(paths[3])


def test_latest_checkpoint_reads_last_old_when_last_is_missing(tmp_path):
    m = gpt()
    t = Trainer(m, AdamW(m.parameters()), lambda r: None, max_steps=9, progress=False,
                checkpoint_dir=str(tmp_path), keep_all_checkpoints=False)
    t.step = 5
    last = t.save_checkpoint()
    os.rename(last, last + ".old")
    assert latest_checkpoint(tmp_path) == last + ".old"
    other = gpt(1)
    fresh = Trainer(other, AdamW(other.parameters()), lambda r: None, max_steps=9, progress=False)
    with pytest.warns(RuntimeWarning, match="interrupted save"):
        assert fresh.resume(last).step == 5
    assert same_state(other.state_dict(), m.state_dict())


@pytest.mark.parametrize("entry, match", [
    ({"shape": [4], "data_offsets": [0, 16]}, "no 'dtype'"),
    ({"dtype": "F32", "data_offsets": [0, 16]}, "no 'shape'"),
    ({"dtype": "F32", "shape": [4]}, "no 'data_offsets'"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}, "needs 16"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}, "ends at byte 24"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}, "malformed data_offsets"),
    ({"dtype": "F32", "shape": ["4"], "data_offsets": [0, 16]}, "malformed shape"),
    ({"dtype": "X9", "shape": [4], "data_offsets": [0, 16]}, "unknown dtype"),
    ([1, 2], "malformed header entry"),
])
def test_a_malformed_safetensors_header_names_the_tensor(tmp_path, entry, match):
    path = tmp_path / "bad.safetensors"
    rt._raw_safetensors(path, {"w": entry}, b"\0" * 16)
    with pytest.raises(ValueError, match=match) as info:
        load_safetensors(path)
    assert "tensor 'w'" in str(info.value)


# ---- all-or-nothing loads -------------------------------------------------------------------

@pytest.mark.parametrize("spoil, error", [
    (lambda sd: sd.update({"transformer.ln_f.bias": np.zeros(3)}), ValueError),              # shape
    (lambda sd: sd["transformer.ln_f.bias"].__setitem__(0, np.nan), ValueError),             # NaN
    (lambda sd: sd.update({"transformer.ln_f.bias": np.zeros(8, bool)}), ValueError),        # dtype
    (lambda sd: sd.update({"transformer.extra": np.zeros(2)}), KeyError),                    # name
])
def test_a_failed_load_state_dict_changes_nothing(spoil, error):
    target, source = gpt(0), gpt(1)
    before = target.state_dict()
    sd = source.state_dict()
    spoil(sd)
    with pytest.raises(error):
        target.load_state_dict(sd)
    assert same_state(target.state_dict(), before)


def _trainer_after_a_step(seed, optimizer=AdamW):
    m = gpt(seed)
    batch = {"input_ids": IDS, "labels": IDS}
    t = Trainer(m, optimizer(m.parameters(), lr=0.01), lambda r: batch, max_steps=9, progress=False)
    t.train_step(batch)
    t.step = 1
    return t


def _snapshot(t):
    opt = t.optimizer.state_dict()
    return t.step, t.model.state_dict(), {i: {k: np.array(v) for k, v in s.items()}
                                          for i, s in opt["state"].items()}


def _unchanged(t, snap):
    step, weights, moments = snap
    now = _snapshot(t)
    return (now[0] == step and same_state(now[1], weights) and now[2].keys() == moments.keys()
            and all(same_state(now[2][i], moments[i]) for i in moments))


def test_a_failed_resume_leaves_model_and_optimizer_as_they_were(tmp_path):
    source = _trainer_after_a_step(1)
    source.step = 7
    path = source.save_checkpoint(str(tmp_path / "ckpt"))
    weights = load_safetensors(os.path.join(path, "model.safetensors"))
    weights["transformer.unexpected"] = np.zeros(3, np.float32)   # the model refuses it ...
    save_safetensors(os.path.join(path, "model.safetensors"), weights)   # ... the optimiser would not
    t = _trainer_after_a_step(0)
    snap = _snapshot(t)
    with pytest.raises(KeyError, match="unexpected keys"):
        t.resume(path)
    assert _unchanged(t, snap)


def test_a_resume_refused_by_the_optimizer_restores_the_model(tmp_path):
    path = _trainer_after_a_step(1).save_checkpoint(str(tmp_path / "ckpt"))   # AdamW state
    t = _trainer_after_a_step(0, optimizer=SGD)
    snap = _snapshot(t)
    with pytest.raises(ValueError, match="AdamW"):
        t.resume(path)
    assert _unchanged(t, snap)


def test_a_resume_with_nan_moments_is_refused(tmp_path):
    path = _trainer_after_a_step(1).save_checkpoint(str(tmp_path / "ckpt"))
    arrays = load_safetensors(os.path.join(path, "optimizer.safetensors"))
    first = sorted(arrays)[0]
    arrays[first][...] = np.nan
    save_safetensors(os.path.join(path, "optimizer.safetensors"), arrays)
    t = _trainer_after_a_step(0)
    snap = _snapshot(t)
    with pytest.raises(ValueError, match=f"{first}.*NaN"):
        t.resume(path)
    assert _unchanged(t, snap)


# ---- configs and models built from the wrong thing -------------------------------------------

@pytest.mark.parametrize("make, error, match", [
    (lambda: GPTConfig(n_embd="8"), TypeError, r"GPTConfig\.n_embd must be a positive int, got '8'"),
    (lambda: GPTConfig(n_layer=2.0), TypeError, r"GPTConfig\.n_layer must be a positive int"),
    (lambda: GPTConfig(n_head=0), ValueError, r"GPTConfig\.n_head must be a positive int"),
    (lambda: GPTConfig(n_embd=10, n_head=4), ValueError, r"n_embd \(10\) must be divisible by n_head \(4\)"),
    (lambda: GPTConfig(attn_pdrop=1.0), ValueError, r"GPTConfig\.attn_pdrop must be in \[0, 1\)"),
    (lambda: GPTConfig(resid_pdrop="0.1"), TypeError, r"GPTConfig\.resid_pdrop must be a float"),
    (lambda: GPTConfig(layer_norm_epsilon=0.0), ValueError, r"GPTConfig\.layer_norm_epsilon must be > 0"),
    (lambda: GPTConfig(layer_norm_epsilon=float("nan")), TypeError, r"layer_norm_epsilon must be a finite"),
    (lambda: GPTConfig(activation_function="gelu2"), ValueError, r"activation_function.*'gelu2'.*gelu_new"),
    (lambda: GPTConfig(n_inner=-4), ValueError, r"GPTConfig\.n_inner must be a positive int"),
    (lambda: GPTConfig(seed=-1), ValueError, r"GPTConfig\.seed must be >= 0"),
    (lambda: BertConfig(hidden_size="8"), TypeError, r"BertConfig\.hidden_size must be a positive int"),
    (lambda: BertConfig(hidden_size=10, num_attention_heads=4), ValueError, r"divisible by num_attention_heads"),
    (lambda: BertConfig(hidden_dropout_prob=-0.1), ValueError, r"BertConfig\.hidden_dropout_prob must be in"),
    (lambda: BertConfig(classifier_dropout=1.5), ValueError, r"BertConfig\.classifier_dropout must be in"),
    (lambda: BertConfig(layer_norm_eps=-1e-12), ValueError, r"BertConfig\.layer_norm_eps must be > 0"),
    (lambda: BertConfig(hidden_act="swishy"), ValueError, r"BertConfig\.hidden_act.*'swishy'"),
    (lambda: BertConfig(num_labels=True), TypeError, r"BertConfig\.num_labels must be a positive int"),
    (lambda: TransformerConfig(d_model="512"), TypeError, r"TransformerConfig\.d_model must be a positive int"),
    (lambda: TransformerConfig(nhead=3), ValueError, r"d_model \(512\) must be divisible by nhead \(3\)"),
    (lambda: TransformerConfig(dropout=1.0), ValueError, r"TransformerConfig\.dropout must be in \[0, 1\)"),
    (lambda: TransformerConfig(layer_norm_eps=0), ValueError, r"TransformerConfig\.layer_norm_eps must be > 0"),
    (lambda: TransformerConfig(norm_first="yes"), TypeError, r"TransformerConfig\.norm_first must be True or False"),
])
def test_a_bad_config_field_is_named_with_what_it_must_be(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_config_json_with_a_string_field_names_it(tmp_path):
    gpt().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["n_embd"] = "8"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(TypeError, match=r"GPTConfig\.n_embd must be a positive int, got '8'"):
        GPT.from_pretrained(tmp_path)


def test_numpy_ints_and_none_where_allowed_are_accepted():
    cfg = GPTConfig(vocab_size=np.int64(24), n_positions=8, n_embd=8, n_layer=1, n_head=2, n_inner=None,
                    bos_token_id=None, eos_token_id=None)
    assert GPT(cfg).config.vocab_size == 24
    assert BertConfig(classifier_dropout=None, pad_token_id=None).pad_token_id is None


@pytest.mark.parametrize("make, config_name", [
    (lambda: GPT("hello"), "GPTConfig"),
    (lambda: GPT({"n_embd": 8}), r"GPTConfig\.from_dict"),
    (lambda: BertModel(GPTConfig()), "BertConfig"),
    (lambda: BertForSequenceClassification(None), "BertConfig"),
    (lambda: Seq2SeqTransformer("hello"), "TransformerConfig"),
])
def test_a_model_built_from_something_else_names_its_config(make, config_name):
    with pytest.raises(TypeError, match=config_name):
        make()


def test_input_ids_of_the_wrong_kind_are_a_type_error():
    with pytest.raises(TypeError, match="input_ids must be an array or a list of integers"):
        gpt()("hello")


# ---- attention masks ------------------------------------------------------------------------

def _mask_calls():
    g, b, s = gpt().eval(), BertModel(bert_config()).eval(), seq2seq().eval()
    return {
        "GPT": lambda mask: g(IDS, attention_mask=mask).logits,
        "BERT": lambda mask: b(IDS, attention_mask=mask).last_hidden_state,
        "seq2seq source": lambda mask: s(IDS, attention_mask=mask, labels=IDS).logits,
        "seq2seq target": lambda mask: s(IDS, decoder_input_ids=IDS, decoder_attention_mask=mask).logits,
    }


MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])


@pytest.mark.parametrize("model", ["GPT", "BERT", "seq2seq source", "seq2seq target"])
def test_an_additive_mask_is_refused_with_the_conversion(model):
    call = _mask_calls()[model]
    additive = np.where(MASK == 1, 0.0, -10000.0)
    with pytest.raises(ValueError, match=r"additive mask.*\(additive == 0\)\.astype\(int\)"):
        call(additive)
    converted = (additive == 0).astype(int)                 # what the message says to do
    np.testing.assert_array_equal(minilm.to_numpy(call(converted)), minilm.to_numpy(call(MASK)))


@pytest.mark.parametrize("model", ["GPT", "BERT", "seq2seq source", "seq2seq target"])
@pytest.mark.parametrize("bad", [2, -1, 0.5, np.nan])
def test_mask_values_other_than_0_and_1_are_refused(model, bad):
    mask = MASK.astype(float)
    mask[1, 2] = bad
    with pytest.raises(ValueError, match="attention_mask contains .*must hold only 0 and 1"):
        _mask_calls()[model](mask)


@pytest.mark.parametrize("model", ["GPT", "BERT", "seq2seq source", "seq2seq target"])
def test_bool_and_float_masks_mean_what_int_masks_mean(model):
    call = _mask_calls()[model]
    ref = minilm.to_numpy(call(MASK))
    no_mask = minilm.to_numpy(call(np.ones_like(MASK)))
    assert not np.allclose(ref, no_mask)                    # the mask matters here
    np.testing.assert_array_equal(minilm.to_numpy(call(MASK.astype(bool))), ref)
    np.testing.assert_array_equal(minilm.to_numpy(call(MASK.astype(np.float32))), ref)
    np.testing.assert_array_equal(minilm.to_numpy(call(MASK.tolist())), ref)


# ---- generate ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(max_new_tokens=2.5), TypeError, "max_new_tokens must be an int >= 0, got 2.5"),
    (dict(max_new_tokens=None), TypeError, "max_new_tokens must be an int >= 0, got None"),
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens must be an int >= 0, got -1"),
    (dict(max_new_tokens=True), TypeError, "max_new_tokens must be an int"),
    (dict(max_new_tokens=2, temperature=float("nan")), ValueError, "temperature must be a finite number > 0"),
    (dict(max_new_tokens=2, temperature=float("inf"), do_sample=True), ValueError, "temperature must be a finite"),
    (dict(max_new_tokens=2, temperature=0.0, do_sample=True), ValueError, "temperature must be > 0"),
    (dict(max_new_tokens=2, temperature="hot"), ValueError, "temperature must be a finite number"),
    (dict(max_new_tokens=2, do_sample=True, top_k=0), ValueError, "top_k must be an int >= 1"),
    (dict(max_new_tokens=2, do_sample=True, top_k=2.5), ValueError, "top_k must be an int >= 1"),
    (dict(max_new_tokens=2, do_sample=True, top_p=0.0), ValueError, r"top_p must be a number in \(0, 1\]"),
    (dict(max_new_tokens=2, do_sample=True, top_p=1.5), ValueError, r"top_p must be a number in \(0, 1\]"),
    (dict(max_new_tokens=2, do_sample=True, seed=1.5), TypeError, "seed must be an int"),
])
def test_bad_generate_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        gpt().generate(IDS[:, :3], **kwargs)


def _grads(model):
    return [minilm.to_numpy(p.grad).copy() for p in model.parameters()]


@pytest.mark.parametrize("generate", [
    lambda m: m.generate(IDS[:, :3], 3),
    lambda m: m.generate(IDS[:, :3], 3, use_cache=False),
    lambda m: m.generate(IDS[:, :3], 2, do_sample=True, top_k=5, seed=0),
])
def test_generate_between_forward_and_backward_changes_no_gradient_on_gpt(generate):
    ref = gpt()                                             # train mode: dropout masks are cached too
    ref(IDS, labels=IDS)
    ref.backward()
    m = gpt()
    m(IDS, labels=IDS)
    generate(m)
    assert m.training
    m.backward()
    for a, b in zip(_grads(ref), _grads(m)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("generate", [
    lambda m: m.generate(IDS, max_new_tokens=3),
    lambda m: m.generate(IDS, max_new_tokens=3, num_beams=2),
    lambda m: m.generate(IDS, max_new_tokens=3, use_cache=False),
    lambda m: m.score_sequences(IDS, np.array([[1, 5, 2], [1, 6, 2]])),
])
def test_generate_between_forward_and_backward_changes_no_gradient_on_seq2seq(generate):
    ref = seq2seq()
    ref(IDS, labels=IDS)
    ref.backward()
    m = seq2seq()
    m(IDS, labels=IDS)
    generate(m)
    m.backward()
    for a, b in zip(_grads(ref), _grads(m)):
        np.testing.assert_array_equal(a, b)


# ---- dtypes -----------------------------------------------------------------------------------

def _layernorm64(x, gamma, beta, eps=1e-5):
    x = x.astype(np.float64)
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * gamma + beta


def test_layernorm_of_float16_activations_is_right():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 64)) * 1000 + 300).astype(np.float16)   # (x - mu)^2 > float16 max
    gamma = rng.standard_normal(64).astype(np.float32)
    beta = rng.standard_normal(64).astype(np.float32)
    out, cache = layernorm_forward(x, gamma, beta)
    assert out.dtype == np.float16 and np.isfinite(out).all()
    ref = _layernorm64(x, gamma.astype(np.float64), beta.astype(np.float64))
    np.testing.assert_allclose(out.astype(np.float64), ref, atol=1e-2 * np.abs(ref).max())
    dout = rng.standard_normal((4, 64)).astype(np.float16)
    dx, dgamma, dbeta = layernorm_backward(dout, cache)
    _, cache64 = layernorm_forward(x.astype(np.float64), gamma.astype(np.float64), beta.astype(np.float64))
    dx64, dgamma64, _ = layernorm_backward(dout.astype(np.float64), cache64)
    assert dx.dtype == np.float16
    np.testing.assert_allclose(dx.astype(np.float64), dx64, atol=1e-2 * np.abs(dx64).max())
    np.testing.assert_allclose(dgamma, dgamma64, rtol=1e-3, atol=1e-3 * np.abs(dgamma64).max())


def test_layernorm_of_integers_is_a_type_error():
    with pytest.raises(TypeError, match="floating-point x, got dtype int64"):
        layernorm_forward(np.ones((2, 4), np.int64), np.ones(4), np.zeros(4))


# ---- safetensors: non-contiguous arrays (0.8.0 corrupted them) -------------------------------

def test_non_contiguous_arrays_are_saved_exactly(tmp_path):
    a = np.arange(60, dtype=np.float32).reshape(6, 10) * 0.5 - 7
    tensors = {"transposed": a.T, "sliced": a[:, ::3], "fortran": np.asfortranarray(a),
               "negative_stride": a[::-1], "scalar": np.float64(3.25) * np.ones(())}
    assert not any(v.flags.c_contiguous for k, v in tensors.items() if k != "scalar")
    save_safetensors(tmp_path / "t.safetensors", tensors)
    back = load_safetensors(tmp_path / "t.safetensors")
    for k, v in tensors.items():
        np.testing.assert_array_equal(back[k], v, err_msg=f"{k} (safetensors {safetensors.__version__})")
    m = gpt()
    p = dict(m.named_parameters())["transformer.h.0.mlp.c_fc.weight"]
    p.data = minilm.get_xp(p.data).asfortranarray(p.data)  # a parameter stored column-major
    m.save_pretrained(tmp_path / "m")
    assert same_state(GPT.from_pretrained(tmp_path / "m").state_dict(), m.state_dict())


def test_safetensors_0_8_0_is_allowed_by_the_requirements():
    root = rt.REPO
    with open(os.path.join(root, "requirements.txt")) as f:
        req = [line for line in f if line.startswith("safetensors")]
    with open(os.path.join(root, "pyproject.toml")) as f:
        deps = [line for line in f if line.startswith("dependencies")]
    assert req and "0.8.0" not in req[0].split("#")[0]
    assert deps and "!=0.8.0" not in deps[0]


# ---- labels -----------------------------------------------------------------------------------

IGNORED = np.full_like(IDS, -100)


@pytest.mark.parametrize("name, make, kwargs", [
    ("GPT", gpt, dict(labels=IGNORED)),
    ("BertForMaskedLM", lambda: BertForMaskedLM(bert_config()), dict(labels=IGNORED)),
    ("BertForTokenClassification", lambda: BertForTokenClassification(bert_config()), dict(labels=IGNORED)),
    ("BertForSequenceClassification", lambda: BertForSequenceClassification(bert_config()),
     dict(labels=[-100, -100])),
    ("BertForPreTraining", lambda: BertForPreTraining(bert_config()),
     dict(labels=IGNORED, next_sentence_label=[-100, -100])),
    ("Seq2SeqTransformer", seq2seq, dict(labels=IGNORED)),
])
def test_all_ignored_labels_give_loss_zero_and_zero_gradients(name, make, kwargs):
    m = make()
    out = m(IDS, **kwargs)
    assert out.loss == 0.0, name
    m.backward()
    assert all(not np.any(g) for g in _grads(m)), name


def test_class_labels_of_shape_b_by_1_are_read_as_b():
    m = BertForSequenceClassification(bert_config()).eval()
    flat = m(IDS, labels=[1, 0]).loss
    assert m(IDS, labels=[[1], [0]]).loss == flat
    with pytest.raises(ValueError, match="labels must be 1-D"):
        m(IDS, labels=[[1, 0], [0, 1]])
    p = BertForPreTraining(bert_config()).eval()
    assert p(IDS, next_sentence_label=[[1], [0]]).loss == p(IDS, next_sentence_label=[1, 0]).loss


# ---- the table's bad inputs, all at once ---------------------------------------------------

def test_every_bad_input_in_the_table_gets_a_clear_answer():
    for what, fn in rt.bad_inputs():
        said = rt.describe(fn)
        assert said != "no error" and "DIFFERENT" not in said and "HALF" not in said, (what, said)
        assert ("Error: " in said and len(said) > 40) or said.startswith(
            ("correct", "works", "accepted", "falls back")), (what, said)


def test_ragged_ids_and_masks_say_they_need_padding():
    from minilm.models.checks import as_ids, as_mask
    with pytest.raises(ValueError, match="input_ids must be a rectangular array of integers .ragged lists need padding"):
        as_ids("input_ids", [[1, 2], [3]], 10)
    with pytest.raises(ValueError, match="attention_mask must be a rectangular array of 0/1"):
        as_mask("attention_mask", [[1, 1], [1]], np.zeros((2, 2), dtype=np.int64))
