"""minilm.train.Trainer on a tiny model defined here (so these tests need no other layer).

The headline test: a run interrupted at step k and resumed from its checkpoint ends with
bit-for-bit the same parameters and losses as a run that was never interrupted.
"""
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from minilm.backend import to_numpy
from minilm.layers.base import Module, Parameter
from minilm.optim import AdamW, SGD, cosine_with_warmup, param_groups_with_decay
from minilm.train import CHECKPOINT_FILES, Trainer, latest_checkpoint

V, C = 7, 8                  # vocabulary size, hidden width


class TinyLM(Module):
    """ids -> tanh(E[ids]) -> dropout -> @ W + b -> cross-entropy with labels.

    input_ids, labels: (B, T) ints  ->  out.loss (float), out.logits (B, T, V)
    Dropout draws from the model's own generator, exposed through rng_state()/set_rng_state().
    """

    def __init__(self, seed=0, p_drop=0.1, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.E = Parameter((rng.standard_normal((V, C)) * 0.5).astype(dtype), "E")
        self.W = Parameter((rng.standard_normal((C, V)) * 0.5).astype(dtype), "W")
        self.b = Parameter(np.zeros(V, dtype=dtype), "b")
        self.p_drop = p_drop
        self.drop_rng = np.random.default_rng(seed + 100)
        self.cache = None

    def own_parameters(self):
        return [("E", self.E), ("W", self.W), ("b", self.b)]

    def rng_state(self):
        return self.drop_rng.bit_generator.state

    def set_rng_state(self, state):
        self.drop_rng.bit_generator.state = state

    def __call__(self, **batch):
        return self.forward(**batch)

    def forward(self, input_ids, labels):
        a = np.tanh(self.E.data[input_ids])                              # (B, T, C)
        if self.training and self.p_drop > 0:
            mask = (self.drop_rng.random(a.shape) >= self.p_drop) / (1 - self.p_drop)
        else:
            mask = np.ones_like(a)
        d = a * mask                                                     # (B, T, C)
        logits = d @ self.W.data + self.b.data                           # (B, T, V)
        z = logits - logits.max(-1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)             # (B, T, V)
        loss = -np.log(np.take_along_axis(probs, labels[..., None], -1)).mean()
        self.cache = (input_ids, labels, a, mask, d, probs)
        return SimpleNamespace(loss=float(loss), logits=logits)

    def backward(self):
        input_ids, labels, a, mask, d, probs = self._check_cache()
        N = labels.size
        dlogits = probs.copy()                                           # (B, T, V)
        np.put_along_axis(dlogits, labels[..., None], np.take_along_axis(dlogits, labels[..., None], -1) - 1, -1)
        dlogits /= N
        self.W.grad += d.reshape(N, C).T @ dlogits.reshape(N, V)
        self.b.grad += dlogits.reshape(N, V).sum(0)
        da = (dlogits @ self.W.data.T) * mask                            # (B, T, C)
        np.add.at(self.E.grad, input_ids, da * (1 - a ** 2))


def get_batch(rng, B=4, T=5):
    """The toy task: predict (id + 1) mod V."""
    ids = rng.integers(0, V, size=(B, T))
    return {"input_ids": ids, "labels": (ids + 1) % V}


def make_trainer(tmp_path=None, model_seed=0, max_steps=12, train_batches=get_batch, **kwargs):
    model = TinyLM(seed=model_seed)
    groups = param_groups_with_decay(model.named_parameters(), 0.1)
    groups[1]["lr_scale"] = 0.5                         # the no-decay group at half the lr
    opt = AdamW(groups, lr=0.05)
    defaults = dict(max_steps=max_steps, grad_clip=0.5, progress=False, seed=3,
                    lr_schedule=lambda s: cosine_with_warmup(s, 0.05, 0.005, 3, max_steps),
                    eval_batches=get_batch, eval_every=4, eval_steps=2)
    if tmp_path is not None:
        defaults.update(checkpoint_dir=str(tmp_path), checkpoint_every=4)
    defaults.update(kwargs)
    return Trainer(model, opt, train_batches, **defaults)


def deterministic(history):
    """History without the wall-clock field."""
    return [{k: v for k, v in h.items() if k != "tokens_per_s"} for h in history]


# ----------------------------------------------------------------------------------------

def test_tiny_model_gradients():
    """The test model's own backward against central differences (so failures below are the trainer's)."""
    model = TinyLM(p_drop=0.0)
    batch = get_batch(np.random.default_rng(0))
    model(**batch)
    model.backward()
    for p in model.parameters():
        for idx in [(0,), (1,), (2,)] if p.data.ndim == 1 else [(0, 1), (2, 3), (5, 0)]:
            old = p.data[idx]
            p.data[idx] = old + 1e-6
            up = model(**batch).loss
            p.data[idx] = old - 1e-6
            down = model(**batch).loss
            p.data[idx] = old
            assert p.grad[idx] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9)


def test_loss_decreases():
    trainer = make_trainer(max_steps=60, eval_every=None, eval_batches=None, log_every=5,
                           lr_schedule=None)
    history = trainer.fit()
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert trainer.step == 60


def test_history_contents():
    trainer = make_trainer(max_steps=10, log_every=3, eval_every=4)
    history = trainer.fit()
    # every log_every steps, plus eval steps and the last step
    assert [h["step"] for h in history] == [3, 4, 6, 8, 9, 10]
    for h in history:
        assert {"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(h)
        assert h["lr"] == pytest.approx(cosine_with_warmup(h["step"] - 1, 0.05, 0.005, 3, 10))
        assert h["tokens_per_s"] > 0 and h["grad_norm"] > 0
    assert [h["step"] for h in history if "eval_loss" in h] == [4, 8, 10]
    # the groups got lr * lr_scale at the last step
    assert trainer.optimizer.param_groups[1]["lr"] == pytest.approx(0.5 * history[-1]["lr"])


def test_evaluate_restores_mode_and_touches_nothing():
    trainer = make_trainer()
    model = trainer.model
    before = {k: v.copy() for k, v in model.state_dict().items()}
    rng_before = trainer.rng.bit_generator.state
    model.train()
    first = trainer.evaluate(3)
    assert model.training
    assert trainer.evaluate(3) == first                 # same eval batches every time
    model.eval()
    trainer.evaluate([get_batch(np.random.default_rng(1))])
    assert not model.training
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert all(not p.grad.any() for p in model.parameters())
    assert trainer.rng.bit_generator.state == rng_before
    with pytest.raises(ValueError, match="eval_batches"):
        make_trainer(eval_batches=None, eval_every=None).evaluate(2)


def test_checkpoint_folder_contents(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=10)
    trainer.fit()
    assert sorted(os.listdir(tmp_path)) == ["step_000004", "step_000008", "step_000010"]
    folder = tmp_path / "step_000008"
    assert sorted(os.listdir(folder)) == sorted(CHECKPOINT_FILES)
    from safetensors.numpy import load_file
    weights = load_file(str(folder / "model.safetensors"))
    assert set(weights) == {"E", "W", "b"}
    opt_arrays = load_file(str(folder / "optimizer.safetensors"))
    assert set(opt_arrays) == {f"state.{i}.{k}" for i in range(3) for k in ("exp_avg", "exp_avg_sq")}
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["step"] == 8 and [h["step"] for h in state["history"]][-1] == 8
    assert state["data_rng"]["bit_generator"] == "PCG64" and state["model_rng"] is not None
    opt_meta = json.loads((folder / "optimizer.json").read_text())
    assert opt_meta["optimizer"] == "AdamW" and opt_meta["state"]["0"]["step"] == 8
    assert opt_meta["param_groups"][0]["param_names"] == ["E", "W"]
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "step_000010")
    np.testing.assert_array_equal(load_file(str(tmp_path / "step_000010" / "model.safetensors"))["W"],
                                  trainer.model.W.data)


def test_keep_only_last_checkpoint(tmp_path):
    make_trainer(tmp_path, max_steps=9, keep_all_checkpoints=False).fit()
    assert os.listdir(tmp_path) == ["last"]
    assert json.loads((tmp_path / "last" / "trainer_state.json").read_text())["step"] == 9


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("data", ["callable", "list"])
def test_resume_is_bit_for_bit(tmp_path, data):
    if data == "callable":
        batches = get_batch
    else:
        rng = np.random.default_rng(7)
        batches = [get_batch(rng) for _ in range(5)]     # 5 batches: epochs wrap around too

    full = make_trainer(tmp_path / "full", max_steps=12, train_batches=batches)
    full.fit()

    # the same run, killed while fetching the batch for step 7 (after the step-4 checkpoint)
    crashed = make_trainer(tmp_path / "crashed", max_steps=12, train_batches=batches)
    real_next_batch = crashed.next_batch
    def next_batch():
        if crashed.step == 6:
            raise Interrupt
        return real_next_batch()
    crashed.next_batch = next_batch
    with pytest.raises(Interrupt):
        crashed.fit()
    assert crashed.step == 6
    assert sorted(os.listdir(tmp_path / "crashed")) == ["step_000004"]

    # a fresh process: different initial weights, new optimiser, new trainer
    resumed = make_trainer(tmp_path / "crashed", model_seed=123, max_steps=12, train_batches=batches)
    resumed.fit(resume_from=tmp_path / "crashed" / "step_000004")
    assert resumed.step == 12
    for (name, p), (_, q) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert np.array_equal(p.data, q.data), name
    assert deterministic(resumed.history) == deterministic(full.history)
    for i, s in full.optimizer.state.items():
        assert np.array_equal(s["exp_avg_sq"], resumed.optimizer.state[i]["exp_avg_sq"])
    assert resumed.rng.bit_generator.state == full.rng.bit_generator.state
    assert resumed.model.rng_state() == full.model.rng_state()


def test_resume_missing_checkpoint(tmp_path):
    trainer = make_trainer()
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        trainer.resume(missing)
    saved = make_trainer(tmp_path, max_steps=4)
    saved.fit()
    os.remove(tmp_path / "step_000004" / "optimizer.json")
    with pytest.raises(FileNotFoundError, match="step_000004.*optimizer.json"):
        trainer.fit(resume_from=tmp_path / "step_000004")


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "trainer_state.json",
                                  "optimizer.json"])
def test_resume_truncated_checkpoint(tmp_path, name):
    make_trainer(tmp_path, max_steps=4).fit()
    path = tmp_path / "step_000004" / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    trainer = make_trainer()
    before = trainer.model.state_dict()
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        trainer.resume(tmp_path / "step_000004")
    assert trainer.step == 0
    for k, v in trainer.model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_resume_other_model_is_a_clear_error(tmp_path):
    make_trainer(tmp_path, max_steps=4).fit()
    model = TinyLM()
    opt = SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="saved by AdamW"):
        Trainer(model, opt, get_batch, max_steps=8, progress=False).resume(tmp_path / "step_000004")


def test_iterable_that_runs_out():
    batches = iter([get_batch(np.random.default_rng(0))] * 3)
    trainer = make_trainer(max_steps=5, train_batches=batches, eval_every=None, eval_batches=None)
    with pytest.raises(RuntimeError, match="ran out of batches at step 3"):
        trainer.fit()


def test_argument_errors():
    with pytest.raises(TypeError, match="single batch dict"):
        make_trainer(train_batches=get_batch(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="checkpoint_dir"):
        make_trainer(checkpoint_every=5)
    with pytest.raises(ValueError, match="eval_batches"):
        make_trainer(eval_batches=None, eval_every=5)


def test_non_finite_gradient_stops_training():
    trainer = make_trainer(max_steps=3, eval_every=None, eval_batches=None)
    trainer.model.W.data[0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="gradient norm is nan/inf"):
        trainer.fit()


def test_progress_bar_runs(capsys):
    make_trainer(max_steps=3, progress=True, eval_every=3).fit()
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err and "tok_s=" in err


def test_resume_gpt_bit_for_bit(tmp_path):
    """The same guarantee with the real GPT (float32, dropout on, lr schedule, clipping)."""
    try:
        from minilm.models import GPT, GPTConfig
    except ImportError as e:                                  # pragma: no cover
        pytest.skip(f"minilm.models.GPT not importable: {e}")
    tokens = np.random.default_rng(0).integers(0, 13, size=400)

    def lm_batch(rng):
        starts = rng.integers(0, len(tokens) - 9, size=3)
        x = np.stack([tokens[s:s + 9] for s in starts])       # (B, T)
        return {"input_ids": x, "labels": x}

    def run(folder, resume_from=None, stop_at=None):
        cfg = GPTConfig(vocab_size=13, n_positions=12, n_embd=8, n_layer=2, n_head=2,
                        resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1, seed=0)
        model = GPT(cfg, dtype="float32")
        opt = AdamW(param_groups_with_decay(model.named_parameters(), 0.1), lr=1e-2)
        trainer = Trainer(model, opt, lm_batch, max_steps=8, grad_clip=1.0, progress=False,
                          lr_schedule=lambda s: cosine_with_warmup(s, 1e-2, 1e-3, 2, 8),
                          checkpoint_dir=str(folder), checkpoint_every=4, seed=5)
        if stop_at is not None:
            real_next_batch = trainer.next_batch
            def next_batch():
                if trainer.step == stop_at:
                    raise Interrupt
                return real_next_batch()
            trainer.next_batch = next_batch
        trainer.fit(resume_from=resume_from)
        return trainer

    full = run(tmp_path / "full")
    with pytest.raises(Interrupt):
        run(tmp_path / "crashed", stop_at=6)
    resumed = run(tmp_path / "crashed", resume_from=tmp_path / "crashed" / "step_000004")
    for (name, p), (_, q) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert p.data.dtype == np.float32 and np.array_equal(to_numpy(p.data), to_numpy(q.data)), name
    assert deterministic(resumed.history) == deterministic(full.history)


# ----------------------------------------------------------------------------------------
# Hooks and the Lightning-style form
# ----------------------------------------------------------------------------------------

def test_step_fn_after_step_and_eval_fn_hooks():
    """A loop that brings its own forward/backward, after-step hook and metric gets the same
    weights as the default step when its step_fn does the same thing."""
    plain = make_trainer(max_steps=6, eval_every=None, eval_batches=None)
    plain.fit()
    seen = []

    def step_fn(batch):
        out = hooked.model(**batch)
        hooked.model.backward()
        return out

    hooked = make_trainer(max_steps=6, eval_every=3, eval_batches=None, step_fn=step_fn,
                          after_step=lambda t: seen.append(t.step),
                          eval_fn=lambda model: {"eval_metric": 1.5})
    history = hooked.fit()
    assert seen == [1, 2, 3, 4, 5, 6]
    assert [h.get("eval_metric") for h in history if h["step"] in (3, 6)] == [1.5, 1.5]
    for p, q in zip(plain.model.parameters(), hooked.model.parameters()):
        assert np.array_equal(p.data, q.data)


def test_after_step_can_stop_training():
    def stop_at_4(t):
        t.should_stop = t.step == 4
    trainer = make_trainer(max_steps=10, eval_every=None, eval_batches=None, after_step=stop_at_4)
    history = trainer.fit()
    assert trainer.step == 4 and history[-1]["step"] == 4


def test_lightning_style_module_trains_with_fit_model_dataloader():
    """Trainer(max_epochs=...).fit(module, train_dataloader): training_step returns a loss,
    minilm calls backward; configure_optimizers gives the optimiser; validation_step is
    averaged into eval_loss once per epoch. Same weights as the classic Trainer."""
    from minilm.data import DataLoader
    from minilm.train import LightningModule

    examples = [get_batch(np.random.default_rng(i), B=1) for i in range(8)]
    examples = [{k: v[0] for k, v in e.items()} for e in examples]

    class LitLM(LightningModule):
        def __init__(self):
            super().__init__()
            self.model = TinyLM(seed=0)

        def training_step(self, batch, batch_idx):
            outputs = self.model(**batch)
            self.log("train_loss", outputs.loss)
            return outputs.loss

        def validation_step(self, batch, batch_idx):
            return self.model(**batch)

        def configure_optimizers(self):
            return AdamW(self.parameters(), lr=0.05)

    module = LitLM()
    trainer = Trainer(max_epochs=2, progress=False)
    history = trainer.fit(module, DataLoader(examples, batch_size=4, seed=0),
                          DataLoader(examples, batch_size=4, shuffle=False))
    assert trainer.step == 4 and "train_loss" in module.logged_values
    assert [h["step"] for h in history if "eval_loss" in h] == [2, 4]
    assert len(module.parameters()) == len(TinyLM().parameters())

    classic_model = TinyLM(seed=0)
    classic = Trainer(classic_model, AdamW(classic_model.parameters(), lr=0.05),
                      DataLoader(examples, batch_size=4, seed=0), max_steps=4, progress=False)
    classic.fit()
    for p, q in zip(module.parameters(), classic_model.parameters()):
        assert np.array_equal(p.data, q.data)


def test_training_step_may_return_a_dict_or_a_float():
    from minilm.train import LightningModule, loss_value
    assert loss_value({"loss": 2.5}) == 2.5 and loss_value(1.5) == 1.5
    assert loss_value(SimpleNamespace(loss=0.5)) == 0.5
    with pytest.raises(ValueError, match="without a loss"):
        loss_value(SimpleNamespace(loss=None))

    class Lit(LightningModule):
        def __init__(self):
            self.lm = TinyLM(seed=0)

        def training_step(self, batch, batch_idx):
            return {"loss": self(**batch).loss}

        def configure_optimizers(self):
            return AdamW(self.parameters(), lr=0.05)

    trainer = Trainer(max_steps=3, progress=False)
    trainer.fit(Lit(), [get_batch(np.random.default_rng(0))])
    assert trainer.step == 3 and trainer.history[-1]["loss"] > 0


def test_trainer_without_model_needs_fit_model():
    with pytest.raises(TypeError, match="no model"):
        Trainer(max_epochs=1, progress=False).fit()
    with pytest.raises(TypeError, match="max_steps"):
        Trainer(TinyLM(), AdamW(TinyLM().parameters()), get_batch, progress=False)


def test_every_training_loop_is_the_trainer(monkeypatch, tmp_path):
    """DP-SGD, FedAvg's clients, the non-private classifier baseline, the compress CLI's two
    loops (fine-tuning, distillation and QAT go through them), bench, CLIP and BERT
    pre-training all step through Trainer.train_step."""
    from minilm import bench
    from minilm.compress import cli
    from minilm.federated import local_update
    from minilm.finetune import PretrainArgs, pydoc_documents, run_pretraining
    from minilm.models import GPT, GPTConfig
    from minilm.multimodal import CLIPConfig, CLIPModel, ShapesData, train_clip
    from minilm.privacy import train_dp
    from minilm.trust_common import tiny_bert_classifier, train_classifier, word_tokenizer

    steps = []
    real = Trainer.train_step
    monkeypatch.setattr(Trainer, "train_step", lambda self, batch: steps.append(1) or real(self, batch))

    def count(run):
        steps.clear()
        run()
        return len(steps)

    words = ["the food was great", "not bad at all"]
    tok = word_tokenizer(words)
    enc = tok(words * 3, padding=True, return_tensors="np")
    data = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "labels": np.array([1, 0] * 3)}
    bert = tiny_bert_classifier(tok.vocab_size, hidden_size=8, num_layers=1, num_heads=2,
                                intermediate_size=16, dropout=0.0, dtype="float64", seed=0)
    assert count(lambda: train_dp(bert, data, 3, 1.0, 1.0, 0.5, params=bert.parameters())) == 3
    assert count(lambda: train_dp(bert, data, 2, 0.0, 1.0, 0.5)) == 2
    assert count(lambda: local_update(bert, data, np.arange(6), epochs=2, batch_size=4)) == 4
    assert count(lambda: train_classifier(bert, data, epochs=2, batch_size=4)) == 4

    gpt = GPT(GPTConfig(vocab_size=13, n_positions=12, n_embd=8, n_layer=1, n_head=2, seed=0))
    lm = lambda rng: {"input_ids": (x := rng.integers(0, 13, (2, 8))), "labels": x}     # noqa: E731
    rng = np.random.default_rng(0)
    hist = []
    assert count(lambda: hist.extend(cli.fit(gpt, gpt.parameters(), lambda e: [lm(rng) for _ in range(2)],
                                             2, 1e-3))) == 4
    assert len(hist) == 2
    data_lm = type("Data", (), {"train_batch": staticmethod(lm)})()
    assert count(lambda: cli.train_lm(gpt, gpt.parameters(), data_lm, 3, 1e-3, 0)) == 3
    assert count(lambda: bench.train_step(gpt, AdamW(gpt.parameters()), gpt.parameters(),
                                          lm(rng)["input_ids"], 1.0)) == 1

    shapes = ShapesData(size=16)
    clip = CLIPModel(CLIPConfig(vocab_size=shapes.tokenizer.vocab_size, image_size=16))
    assert count(lambda: train_clip(clip, shapes, steps=2, batch_size=4, warmup=1)) == 2

    args = PretrainArgs(steps=2, batch_size=4, max_length=32, vocab_size=600, hidden_size=16,
                        num_layers=1, num_heads=2, eval_every=2)
    assert count(lambda: run_pretraining(args, out=str(tmp_path), progress=False,
                                         documents=pydoc_documents()[:8], eval_batches=1)) == 2
