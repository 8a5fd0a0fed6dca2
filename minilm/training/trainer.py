"""Trainer: the training loop, written out once (a small PyTorch-Lightning-style loop).

One step, `Trainer.train_step`, is the whole algorithm:

    lr = lr_schedule(step)                      # on every group, times group["lr_scale"]
    batch = get_batch(rng)                      # a dict of NumPy arrays
    model.zero_grad()
    out = model(**batch)                        # forward; the model keeps its caches
    model.backward()                            # d out.loss / d p, into every p.grad
    grad_norm = clip_grad_norm_(params, grad_clip)
    optimizer.step()

`fit()` repeats it to `max_steps` with a progress bar, evaluates, logs `history` and writes
checkpoints; `resume()` restores a checkpoint so that an interrupted run ends bit for bit
where an uninterrupted one would (on CPU). Checkpoints are safetensors + JSON, never pickle:

    checkpoint_dir/step_000500/
        model.safetensors        model.state_dict()
        optimizer.safetensors    the optimiser's arrays, keys "state.<param index>.<name>"
        optimizer.json           the rest of optimizer.state_dict(): step counts, lr, names
        trainer_state.json       step, history, data RNG state, model RNG state (if any)

Every training loop in minilm is this Trainer with hooks (BERT pre-training, CLIP, DP-SGD,
FedAvg's clients, distillation, QAT, the compress CLI, bench): a loop that needs more than
`model(**batch)` passes `step_fn` (forward and backward on one batch, any gradient it likes
in p.grad), `after_step` (after each optimizer.step(): accounting, masks, logging) and
`eval_fn` (its own metric). A Lightning-style module trains with it too:

    class Classifier(LightningModule):                # minilm.train.LightningModule
        def __init__(self):
            self.model = BertForSequenceClassification.from_pretrained(folder, num_labels=2)
        def training_step(self, batch, batch_idx):
            return self.model(**batch).loss          # minilm then calls self.backward()
        def configure_optimizers(self):
            return AdamW(self.parameters(), lr=2e-5)

    trainer = Trainer(max_epochs=3)
    trainer.fit(Classifier(), train_dataloader)       # a DataLoader, a list of batches, ...

NumPy appears here only on the host side: the data RNG and the arrays written to disk.
"""
import json
import math
import os
import time
import warnings

import numpy as np

from ..io import ASIDE_SUFFIX, atomic_folder, load_safetensors, resolve_folder, save_safetensors, write_json
from ..layers.base import Module
from .optim import clip_grad_norm_
from .precision import LossScaler, MixedPrecision, check_precision

CHECKPOINT_FILES = ("model.safetensors", "optimizer.safetensors", "optimizer.json",
                    "trainer_state.json")


class Trainer:
    """Train `model` with `optimizer` for `max_steps` steps.

    model: `out = model(**batch)` returns an object with `.loss` (a float), after which
        `model.backward()` adds d loss / d p into every parameter's `.grad`; it has
        `train()`, `eval()`, `parameters()`, `zero_grad()`, `state_dict()`,
        `load_state_dict()`. If it also has `rng_state()` / `set_rng_state(state)` (say,
        for dropout), that state is checkpointed too.
    train_batches: a callable `get_batch(rng) -> dict` that draws a batch with the
        trainer's own `numpy.random.Generator` (seeded by `seed`, saved in checkpoints, so
        a resumed run sees the same batches); or an iterable of batch dicts (a list is
        re-iterated once used up; on resume the first `step` batches are skipped, so the
        iterable must yield the same sequence again).
    eval_batches: the same two kinds, for `evaluate`. A callable gets a fresh generator
        seeded from `seed` on every evaluation, so each evaluation sees the same batches.
    lr_schedule: callable step -> lr, step counting from 0; sets every group's lr to
        lr_schedule(step) * group.get("lr_scale", 1.0) before the step. None: leave lr alone.
    grad_clip: max joint gradient norm (None: no clipping). The norm is computed and logged
        either way, and a nan/inf norm stops training with FloatingPointError.
    eval_every / eval_steps: evaluate on `eval_steps` batches every `eval_every` steps and
        at the end (needs eval_batches).
    log_every: a `history` entry every `log_every` steps (and at eval, checkpoint and final
        steps); its loss is the mean over the steps since the previous entry.
    checkpoint_dir / checkpoint_every: save every `checkpoint_every` steps and at the end
        to `checkpoint_dir/step_XXXXXX/`, or always to `checkpoint_dir/last/` when
        keep_all_checkpoints=False.
    progress: show a tqdm bar with loss, lr and tokens/s (tokens = input_ids.size).
    max_epochs: instead of (or as a cap on) max_steps: epochs x len(train_batches) steps.
    comm: a `minilm.dist` communicator for data-parallel runs (the model wrapped in
        `minilm.dist.DataParallel`): only rank 0 writes checkpoints.
    precision: "fp32" (default) or "fp16": float16 mixed precision (minilm/training/
        precision.py): the forward and backward run on float16 copies of the float32
        weights, the optimiser updates the float32 masters, the loss is scaled dynamically.
        The model must be float32 and its backward must take `loss_scale` (GPT does); a
        step_fn or a DataParallel model is not supported. The evaluation loss is computed in
        float16 too; an `eval_fn(model)` sees the float32 weights.
        `loss_scaler`: LossScaler(growth_interval=...) to change the scaling rules; its
        `events` (skips, halvings, growths) are also in each history record's
        "loss_scale_events", and every record has "loss_scale".

    Hooks, for loops that do more than `model(**batch)` (each gets the trainer):
    step_fn(batch) -> output with .loss, or a float: forward and backward on one batch
        (gradients into p.grad however the loop likes: per-example clipping and noise,
        a distillation loss, ...); None means "nothing to learn from this batch" (an
        empty Poisson batch): the optimiser does not step, the step still counts. Default: `model.training_step(batch, batch_idx)` then
        `model.backward()` for a Lightning-style module, else `model(**batch)` then
        `model.backward()`. The output is kept as `trainer.last_output`.
    after_step(trainer): after every optimizer.step() (privacy accounting, pruning masks,
        the loop's own logging); it may set `trainer.should_stop = True`.
    eval_fn(model) -> float or dict: the metric at eval steps, added to the history record
        (a dict's items, or a float as "eval"); default the mean loss on eval_batches.

    The Lightning shape: `Trainer(max_epochs=3).fit(module, train_dataloader)`, where the
    module has `training_step(batch, batch_idx)`, `configure_optimizers()` and optionally
    `validation_step(batch, batch_idx)` (its mean is `eval_loss`); see LightningModule.
    """

    def __init__(self, model=None, optimizer=None, train_batches=None, eval_batches=None, *,
                 max_steps=None, max_epochs=None, lr_schedule=None, grad_clip=None,
                 eval_every=None, eval_steps=20, log_every=1, checkpoint_dir=None,
                 checkpoint_every=None, keep_all_checkpoints=True, progress=True, seed=0,
                 step_fn=None, after_step=None, eval_fn=None, comm=None, precision="fp32",
                 loss_scaler=None):
        for name, batches in (("train_batches", train_batches), ("eval_batches", eval_batches)):
            if isinstance(batches, dict):
                raise TypeError(f"{name} is a single batch dict; pass a list of batches or a "
                                "callable get_batch(rng) -> dict")
        if max_steps is not None and max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {max_steps}")
        if max_epochs is not None and max_epochs < 0:
            raise ValueError(f"max_epochs must be >= 0, got {max_epochs}")
        if max_steps is None and max_epochs is None and model is not None:
            raise TypeError("Trainer needs max_steps (or max_epochs with a sized train_batches)")
        for name, value in (("eval_every", eval_every), ("log_every", log_every),
                            ("checkpoint_every", checkpoint_every)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None), got {value}")
        if eval_every is not None and eval_batches is None and eval_fn is None and model is not None:
            raise ValueError("eval_every needs eval_batches (or eval_fn)")
        if checkpoint_every is not None and checkpoint_dir is None:
            raise ValueError("checkpoint_every needs checkpoint_dir")
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 (or None), got {grad_clip}")
        self.precision = check_precision(precision)
        if precision == "fp16" and step_fn is not None:
            raise ValueError("precision='fp16' scales the loss inside model.backward(loss_scale=...); "
                             "a step_fn computes its own gradients, so it cannot be combined with it")
        if loss_scaler is not None and precision != "fp16":
            raise ValueError("loss_scaler is for precision='fp16'")
        self.loss_scaler = (loss_scaler or LossScaler()) if precision == "fp16" else None
        self.mixed = None                             # MixedPrecision, set in _attach
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.lr_schedule = lr_schedule
        self.grad_clip = grad_clip
        self.eval_every = eval_every
        self.eval_steps = eval_steps
        self.log_every = log_every
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.keep_all_checkpoints = keep_all_checkpoints
        self.progress = progress
        self.seed = seed
        self.step_fn = step_fn
        self.after_step = after_step
        self.eval_fn = eval_fn
        self.comm = comm                              # minilm.dist communicator: rank 0 writes
        self.step = 0                                 # optimiser steps taken so far
        self.history = []                             # one dict per logged step
        self.rng = np.random.default_rng(seed)        # draws the training batches
        self.should_stop = False                      # a hook may set it to end fit() early
        self.last_output = None                       # what the last step's forward returned
        self.last_batch = None
        self.model = self.optimizer = None
        if model is not None:
            self._attach(model, optimizer, train_batches, eval_batches)

    def _attach(self, model, optimizer, train_batches, eval_batches):
        """Take a model (or a Lightning-style module: its configure_optimizers() gives the
        optimiser when none is passed) and its data; work out max_steps from max_epochs."""
        if optimizer is None:
            if not hasattr(model, "configure_optimizers"):
                raise TypeError("pass an optimizer, or a module with configure_optimizers()")
            optimizer = model.configure_optimizers()
        if train_batches is None and self.step_fn is None:
            raise TypeError("pass train_batches: a list of batch dicts, a DataLoader, or a "
                            "callable get_batch(rng) -> dict")
        if isinstance(train_batches, dict) or isinstance(eval_batches, dict):
            raise TypeError("train_batches/eval_batches is a single batch dict; pass a list of "
                            "batches or a callable get_batch(rng) -> dict")
        self.model = model
        self.optimizer = optimizer
        self.train_batches = train_batches
        self.eval_batches = eval_batches
        self._batch_iter = None                       # when train_batches is an iterable
        self._epoch_len = None if callable(train_batches) or not hasattr(train_batches, "__len__") \
            else len(train_batches)
        if self.max_epochs is not None:
            if self._epoch_len is None:
                raise TypeError("max_epochs needs train_batches with a len() (a list, a "
                                "DataLoader); for a callable get_batch pass max_steps")
            epoch_steps = self.max_epochs * self._epoch_len
            self.max_steps = epoch_steps if self.max_steps is None else min(self.max_steps, epoch_steps)
        if self.max_steps is None:
            raise TypeError("Trainer needs max_steps (or max_epochs with a sized train_batches)")
        self._params = [p for g in optimizer.param_groups for p in g["params"]]
        if self.precision == "fp16":
            self._check_fp16_model(model)
            if hasattr(optimizer, "clip_grad_norm_"):            # ZeroAdamW: sharded state
                raise ValueError("precision='fp16' is not supported with a sharded optimiser "
                                 f"({type(optimizer).__name__}); use AdamW")
            self.mixed = MixedPrecision(model.parameters())

    def _check_fp16_model(self, model):
        import inspect
        if hasattr(model, "module") and hasattr(model, "comm"):
            raise ValueError("precision='fp16' trains an unwrapped model in one process; "
                             "DataParallel is not supported with it")
        try:
            params = inspect.signature(model.backward).parameters
            takes_scale = "loss_scale" in params or any(
                q.kind is inspect.Parameter.VAR_KEYWORD for q in params.values())  # passes it on
        except (TypeError, ValueError):
            takes_scale = False
        if not takes_scale:
            raise TypeError(f"precision='fp16' needs a model whose backward takes loss_scale "
                            f"(every minilm model's does); {type(model).__name__}.backward does not")

    # ------------------------------------------------------------------------------------
    # One step
    # ------------------------------------------------------------------------------------

    def set_lr(self, step):
        """Apply lr_schedule(step) to every group (times its "lr_scale"); return the lr."""
        if self.lr_schedule is None:
            return self.optimizer.param_groups[0]["lr"]
        lr = float(self.lr_schedule(step))
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def next_batch(self):
        """The next training batch: get_batch(self.rng), or the iterable's next item."""
        if callable(self.train_batches):
            return self.train_batches(self.rng)
        if self._batch_iter is None:
            self._batch_iter = iter(self.train_batches)
        try:
            return next(self._batch_iter)
        except StopIteration:
            self._batch_iter = iter(self.train_batches)     # a list starts a new epoch
        try:
            return next(self._batch_iter)
        except StopIteration:                               # a spent iterator stays spent
            raise RuntimeError(f"train_batches ran out of batches at step {self.step} of "
                               f"{self.max_steps}; pass a list (re-iterated every epoch), a "
                               "longer iterable, or a callable get_batch(rng)") from None

    def train_step(self, batch):
        """Forward, backward, clip, update on one batch. Returns (loss, grad_norm)."""
        if self.mixed is not None:
            return self.train_step_fp16(batch)
        self.model.zero_grad()
        out = self.forward_backward(batch)
        self.last_output, self.last_batch = out, batch
        if out is None:                                          # step_fn: no update
            return math.nan, 0.0
        max_norm = self.grad_clip if self.grad_clip is not None else math.inf
        clip = getattr(self.optimizer, "clip_grad_norm_", None)   # ZeroAdamW: from the shards
        grad_norm = clip(max_norm) if clip else clip_grad_norm_(self._params, max_norm)  # inf: measure
        self.optimizer.step()
        return loss_value(out), grad_norm

    def train_step_fp16(self, batch):
        """train_step in float16 mixed precision (minilm/training/precision.py):

            half weights -> forward, backward of scale * loss -> float32 grads / scale
            inf/NaN: skip the update, halve the scale    else: clip, step, maybe grow the scale
        Returns (loss, grad_norm); a skipped step's grad_norm is inf."""
        scaler = self.loss_scaler
        self.mixed.half()
        try:
            self.model.zero_grad()                               # the float16 buffers
            with np.errstate(over="ignore", invalid="ignore"):   # overflow: the scaler's business
                out = self.forward_backward(batch, loss_scale=scaler.scale)
        finally:
            finite = self.mixed.master(scaler.scale)             # float32 masters and grads back
        self.last_output, self.last_batch = out, batch
        if not scaler.update(finite, self.step + 1):             # skip: nothing changes
            return loss_value(out), math.inf
        max_norm = self.grad_clip if self.grad_clip is not None else math.inf
        grad_norm = clip_grad_norm_(self._params, max_norm)
        self.optimizer.step()
        return loss_value(out), grad_norm

    def forward_backward(self, batch, loss_scale=None):
        """The step's forward and backward (gradients into p.grad); returns the output.
        loss_scale: passed on to model.backward (mixed precision), else not passed."""
        scale = {} if loss_scale is None else {"loss_scale": loss_scale}
        if self.step_fn is not None:
            return self.step_fn(batch)
        if hasattr(self.model, "training_step"):                 # Lightning-style module
            out = self.model.training_step(batch, self.step)
            self.model.backward(**scale)
            return out
        out = self.model(**batch)
        self.model.backward(**scale)
        return out

    # ------------------------------------------------------------------------------------
    # The loop
    # ------------------------------------------------------------------------------------

    def fit(self, model=None, train_dataloaders=None, val_dataloaders=None, *, resume_from=None):
        """Train from self.step to max_steps (after `resume(resume_from)` if given).

        `fit(module, train_dataloader, val_dataloader=None)` is the Lightning form, for a
        Trainer made without a model (`Trainer(max_epochs=3)`); `fit(path)` resumes.
        Returns `history`: dicts with step, loss, lr, grad_norm, tokens_per_s and, at
        evaluation steps, eval_loss (or eval_fn's values).
        """
        if isinstance(model, (str, os.PathLike)):           # fit(path): the old positional resume
            model, resume_from = None, model
        if model is not None:
            if self.model is not None:
                raise TypeError("this Trainer already has a model; call fit() without one")
            self._attach(model, None, train_dataloaders, val_dataloaders)
            if val_dataloaders is not None and self.eval_every is None and self._epoch_len:
                self.eval_every = self._epoch_len             # validate once per epoch
        elif self.model is None:
            raise TypeError("fit(model, train_dataloader): this Trainer has no model yet")
        if resume_from is not None:
            self.resume(resume_from)
        self.model.train()
        self.should_stop = False
        bar = progress_bar(self.progress, total=self.max_steps, initial=self.step)
        losses, tokens, t0 = [], 0, time.perf_counter()     # the current logging window
        n_events = len(self.loss_scaler.events) if self.loss_scaler is not None else 0
        try:
            while self.step < self.max_steps and not self.should_stop:
                lr = self.set_lr(self.step)
                batch = self.next_batch()
                loss, grad_norm = self.train_step(batch)
                self.step += 1
                losses.append(loss)
                if isinstance(batch, dict) and "input_ids" in batch:
                    tokens += int(np.size(batch["input_ids"]))
                bar.update(1)
                if self.after_step is not None:
                    self.after_step(self)

                last = self.step == self.max_steps or self.should_stop
                evaluate = self.eval_every is not None and (self.step % self.eval_every == 0 or last)
                save = self.checkpoint_dir is not None and (
                    last or (self.checkpoint_every is not None
                             and self.step % self.checkpoint_every == 0))
                if self.step % self.log_every == 0 or last or evaluate or save:
                    seconds = time.perf_counter() - t0
                    record = {"step": self.step, "loss": sum(losses) / len(losses), "lr": lr,
                              "grad_norm": grad_norm,
                              "tokens_per_s": tokens / seconds if seconds > 0 else 0.0}
                    if self.loss_scaler is not None:                # fp16: the scale and its events
                        new = self.loss_scaler.events[n_events:]
                        n_events = len(self.loss_scaler.events)
                        record.update(loss_scale=self.loss_scaler.scale, loss_scale_events=new)
                        for e in new:
                            bar.write(f"step {e['step']}: loss scale "
                                      + ("overflow: step skipped, scale halved" if e["event"] == "skip"
                                         else "grown") + f" to {e['scale']:g}")
                    if evaluate:
                        record.update(self.run_eval())
                        bar.write(f"step {self.step}: train loss {record['loss']:.4f}, " + ", ".join(
                            f"{k} {v:.4f}" for k, v in record.items()
                            if k.startswith("eval") and isinstance(v, float)))
                    self.history.append(record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}",
                                    tok_s=f"{record['tokens_per_s']:,.0f}", refresh=False)
                    if save:
                        self.save_checkpoint()
                    losses, tokens, t0 = [], 0, time.perf_counter()
        finally:
            bar.close()
        return self.history

    def run_eval(self):
        """The metrics of an evaluation step, as a dict: eval_fn's, or {"eval_loss": ...}."""
        if self.eval_fn is None:
            return {"eval_loss": self.evaluate(self.eval_steps)}
        result = self.eval_fn(self.model)
        return dict(result) if isinstance(result, dict) else {"eval": float(result)}

    def evaluate(self, batches_or_n=None):
        """Mean loss in eval mode, without backward; the previous mode is restored.

        batches_or_n: an int n (n batches from eval_batches), an iterable of batch dicts,
        or None (eval_steps batches from eval_batches).
        """
        if batches_or_n is None:
            batches_or_n = self.eval_steps
        batches = self._eval_batches(batches_or_n) if isinstance(batches_or_n, int) else batches_or_n
        was_training = getattr(self.model, "training", True)
        self.model.eval()
        if self.mixed is not None:
            self.mixed.half()                                   # evaluate the float16 model
        try:
            if hasattr(self.model, "validation_step"):          # Lightning-style module
                losses = [loss_value(self.model.validation_step(batch, i))
                          for i, batch in enumerate(batches)]
            else:
                losses = [float(self.model(**batch).loss) for batch in batches]
        finally:
            if self.mixed is not None:
                self.mixed.master(None)
            if was_training:
                self.model.train()
        if not losses:
            raise ValueError("evaluate got no batches")
        return sum(losses) / len(losses)

    def _eval_batches(self, n):
        if self.eval_batches is None:
            raise ValueError("evaluate(n) needs eval_batches; pass eval_batches to Trainer "
                             "or a list of batches to evaluate")
        if callable(self.eval_batches):
            rng = np.random.default_rng([self.seed, 1])     # same batches every evaluation
            return [self.eval_batches(rng) for _ in range(n)]
        batches = []
        for batch in self.eval_batches:
            if len(batches) == n:
                break
            batches.append(batch)
        return batches

    # ------------------------------------------------------------------------------------
    # Checkpoints
    # ------------------------------------------------------------------------------------

    def save_checkpoint(self, path=None):
        """Write model, optimiser and trainer state to `path` (default: under
        checkpoint_dir); returns the folder. Crash-safe (`minilm.io.atomic_folder`): the
        files are written and fsync'ed in `path.tmp`, which is then swapped in, so at every
        instant `path` (or `path.old`, which `latest_checkpoint` also reads) holds the old or
        the new checkpoint, whole. Every tensor carries its sha256."""
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("save_checkpoint needs a path or Trainer(checkpoint_dir=...)")
            name = f"step_{self.step:06d}" if self.keep_all_checkpoints else "last"
            path = os.path.join(self.checkpoint_dir, name)
        path = os.path.abspath(path)
        arrays, meta = _split_optimizer_state(self.optimizer.state_dict())   # may be collective
        if self.comm is not None and self.comm.rank != 0:
            return path                                   # data parallel: rank 0 writes
        state = {"step": self.step, "max_steps": self.max_steps, "seed": self.seed,
                 "history": self.history,
                 "data_rng": self.rng.bit_generator.state,
                 "model_rng": _to_json(self.model.rng_state()) if _has_rng(self.model) else None}
        if self.loss_scaler is not None:
            state["loss_scaler"] = self.loss_scaler.state_dict()
        with atomic_folder(path, keep_other_files=False) as tmp:
            save_safetensors(os.path.join(tmp, "model.safetensors"), self.model.state_dict())
            save_safetensors(os.path.join(tmp, "optimizer.safetensors"), arrays)
            _write_json(meta, os.path.join(tmp, "optimizer.json"))
            _write_json(state, os.path.join(tmp, "trainer_state.json"))
        return path

    def resume(self, checkpoint_path):
        """Restore model weights, optimiser state, step, history and RNG states from a
        folder written by `save_checkpoint`. Returns self.

        All or nothing: every file is read and checked (checksums, names, shapes, finite
        values) before anything changes, and a failure restores what was loaded; the
        trainer, model and optimiser are then as they were. Raises FileNotFoundError if the
        folder or one of its files is missing, ValueError if a file is truncated or
        corrupt; a checkpoint of another model raises from load_state_dict.
        """
        path = os.path.abspath(resolve_folder(checkpoint_path))
        if not os.path.isdir(path):
            raise FileNotFoundError(f"checkpoint folder not found: {path}")
        weights, optimizer_state, state = _read_checkpoint(path)
        step, history, data_rng = state["step"], state["history"], state["data_rng"]
        model_rng = state.get("model_rng")
        model_rng = _from_json(model_rng) if model_rng is not None and _has_rng(self.model) else None

        saved_weights = self.model.state_dict()             # to undo a half-done resume
        saved_rng = self.model.rng_state() if model_rng is not None else None
        self.model.load_state_dict(weights)                 # all or nothing
        try:
            if model_rng is not None:
                self.model.set_rng_state(model_rng)
            self.optimizer.load_state_dict(optimizer_state)  # checks names/shapes before copying
        except BaseException:
            self.model.load_state_dict(saved_weights)
            if saved_rng is not None:
                self.model.set_rng_state(saved_rng)
            raise
        self.step, self.history = int(step), list(history)
        self.rng.bit_generator.state = data_rng
        if self.loss_scaler is not None and state.get("loss_scaler") is not None:
            self.loss_scaler.load_state_dict(state["loss_scaler"])
        if not callable(self.train_batches):                # replay the iterable up to `step`
            self._batch_iter = None
            for _ in range(self.step):
                self.next_batch()
        return self


def loss_value(out):
    """The float loss of a step's output: `out.loss`, `out["loss"]` (a Lightning-style dict),
    or `out` itself when it is a number."""
    loss = out["loss"] if isinstance(out, dict) else getattr(out, "loss", out)
    if loss is None:
        raise ValueError("the step returned an output without a loss (labels missing?)")
    return float(loss)


class no_grad:
    """`with no_grad():` as PyTorch's, so evaluation code ports unchanged. minilm builds no
    autograd graph, so there is nothing to switch off: gradients only ever come from an
    explicit `model.backward()`, and a forward without one costs no more than PyTorch's
    under no_grad (the layers' caches are overwritten by the next forward)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class LightningModule(Module):
    """A module written Lightning-style, trained with `Trainer(...).fit(module, loader)`.

    Write `training_step(self, batch, batch_idx)` (return the loss, or an output with .loss;
    the Trainer then calls `self.backward()`), `configure_optimizers(self)` (return an
    optimiser), and optionally `validation_step(self, batch, batch_idx)`. Sub-modules are
    the Module attributes set in __init__ (found by reading vars(self), in the order set).
    `backward()` runs the backward of the one sub-module that the step used; with several,
    override it (e.g. `self.student.backward()`).
    """

    def named_children(self):
        return [(name, m) for name, m in vars(self).items() if isinstance(m, Module)]

    def forward(self, *args, **kwargs):
        children = self.named_children()
        if len(children) != 1:
            raise NotImplementedError(f"{type(self).__name__} has {len(children)} sub-modules; "
                                      "write forward() to say which one runs")
        return children[0][1](*args, **kwargs)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def backward(self, *args, **kwargs):
        children = self.named_children()
        if len(children) != 1:
            raise NotImplementedError(f"{type(self).__name__} has {len(children)} sub-modules; "
                                      "write backward() to say which one the loss came from")
        return children[0][1].backward(*args, **kwargs)

    def log(self, name, value, **kwargs):
        """Lightning's self.log: keeps the last value in `self.logged_values[name]` (kwargs ignored)."""
        if not hasattr(self, "logged_values"):
            self.logged_values = {}
        self.logged_values[name] = float(value)


def _read_checkpoint(path):
    """(weights, optimizer state dict, trainer state) of a checkpoint folder, every file
    read and checked; FileNotFoundError or ValueError saying what is wrong."""
    for name in CHECKPOINT_FILES:
        if not os.path.isfile(os.path.join(path, name)):
            raise FileNotFoundError(f"checkpoint {path} is incomplete: {name} is missing")
    state = _read_json(os.path.join(path, "trainer_state.json"))
    meta = _read_json(os.path.join(path, "optimizer.json"))
    weights = _read_safetensors(os.path.join(path, "model.safetensors"))
    arrays = _read_safetensors(os.path.join(path, "optimizer.safetensors"))
    try:
        optimizer_state = _join_optimizer_state(arrays, meta)
        if not isinstance(state["step"], int) or state["step"] < 0:
            raise ValueError(f"step must be an int >= 0, got {state['step']!r}")
        if not isinstance(state["history"], list):
            raise ValueError("history must be a list")
        np.random.default_rng().bit_generator.state = state["data_rng"]   # a valid RNG state?
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"checkpoint {path} is malformed: {e!r}") from e
    for name, a in list(weights.items()) + list(arrays.items()):
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"checkpoint {path} is corrupt: {name!r} holds NaN or inf")
    return weights, optimizer_state, state


def latest_checkpoint(checkpoint_dir):
    """The newest whole `step_XXXXXX` (or `last`) folder in checkpoint_dir, or None.

    Incomplete or corrupt checkpoints (a missing file, unreadable JSON, a truncated file, a
    tensor that fails its checksum) are skipped with a warning, falling back to the newest
    good one. A `name.old` folder (left when a save died between its two renames) counts
    when `name` itself is missing or bad.
    """
    if not os.path.isdir(checkpoint_dir):
        return None
    candidates = []
    for name in os.listdir(checkpoint_dir):
        base = name[:-len(ASIDE_SUFFIX)] if name.endswith(ASIDE_SUFFIX) else name
        if not (base == "last" or (base.startswith("step_") and base[5:].isdigit())):
            continue
        path = os.path.join(checkpoint_dir, name)
        try:
            state = _read_json(os.path.join(path, "trainer_state.json"))
            step = state["step"]
            if not isinstance(step, int):
                raise ValueError(f"step is {step!r}")
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.warn(f"skipping checkpoint {path}: {e}", RuntimeWarning, stacklevel=2)
            continue
        candidates.append((step, name == base, path))      # on a tie, prefer name over name.old
    for step, _, path in sorted(candidates, reverse=True):
        try:
            _read_checkpoint(path)                          # every file, checksums included
        except (OSError, ValueError) as e:
            warnings.warn(f"skipping checkpoint {path}: {e}", RuntimeWarning, stacklevel=2)
            continue
        return path
    return None


# ----------------------------------------------------------------------------------------
# Helpers: files, optimiser state split into arrays + JSON, RNG states
# ----------------------------------------------------------------------------------------

def _split_optimizer_state(state_dict):
    """optimizer.state_dict() -> ({"state.<i>.<name>": array}, JSON-able rest)."""
    arrays, scalars = {}, {}
    for i, s in state_dict["state"].items():
        scalars[str(i)] = {}
        for key, value in s.items():
            if hasattr(value, "shape"):
                arrays[f"state.{i}.{key}"] = np.ascontiguousarray(value)
            else:
                scalars[str(i)][key] = value
    meta = {"optimizer": state_dict["optimizer"], "state": scalars,
            "param_groups": state_dict["param_groups"]}
    return arrays, meta


def _join_optimizer_state(arrays, meta):
    """The inverse of _split_optimizer_state."""
    state = {int(i): dict(s) for i, s in meta["state"].items()}
    for name, value in arrays.items():
        _, i, key = name.split(".", 2)
        state.setdefault(int(i), {})[key] = value
    return {"optimizer": meta["optimizer"], "state": state, "param_groups": meta["param_groups"]}


def _write_json(obj, path):
    write_json(path, obj, indent=1, default=_json_default)        # flushed and fsync'ed


def _json_default(x):
    if hasattr(x, "item"):              # NumPy scalars
        return x.item()
    raise TypeError(f"cannot write {type(x).__name__} to a JSON checkpoint")


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"could not read checkpoint file {path}: truncated or corrupted? ({e})") from e


def _read_safetensors(path):
    try:
        return load_safetensors(path)                       # header checks and checksums
    except ValueError as e:             # ChecksumError stays a ChecksumError
        raise type(e)(f"could not read checkpoint file {path}: {e}") from e


def _has_rng(model):
    return hasattr(model, "rng_state") and hasattr(model, "set_rng_state")


def _to_json(x):
    """Make an RNG state JSON-able: arrays become {"__ndarray__": list, "dtype": str}."""
    if isinstance(x, dict):
        return {k: _to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_json(v) for v in x]
    if isinstance(x, np.ndarray):
        return {"__ndarray__": x.tolist(), "dtype": str(x.dtype)}
    if isinstance(x, np.generic):
        return x.item()
    return x


def _from_json(x):
    if isinstance(x, dict):
        if "__ndarray__" in x:
            return np.array(x["__ndarray__"], dtype=x["dtype"])
        return {k: _from_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_from_json(v) for v in x]
    return x


class _NoBar:
    """Stands in for tqdm when progress=False."""

    def update(self, n=1):
        pass

    def set_postfix(self, refresh=True, **kwargs):
        pass

    def write(self, text):
        pass

    def close(self):
        pass


def progress_bar(enabled, total, initial=0):
    """A tqdm bar over `total` steps, or an object with the same four methods that does
    nothing when `enabled` is false (update, set_postfix, write, close)."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
