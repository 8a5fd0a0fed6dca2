"""Turn the experiments' JSON records into a Markdown report (`python -m minilm.compress report`)."""
import json
import os
import platform


def _load(folder, name):
    path = os.path.join(folder, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _mb(n):
    return f"{n / 1e6:.2f} MB"


def _how(r):
    return f"`{r['command']}` ({r['wall_s']:.0f} s wall, OPENBLAS_NUM_THREADS={r.get('threads', 'default')})"


def _missing(name):
    return f"*Not run: `python -m minilm.compress {name}` writes it.*\n"


def _plot_distill_gpt(g, folder):
    from ...viz import pyplot
    plt = pyplot()
    os.makedirs(folder, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, v), style in zip(g["results"].items(), ("o-", "s-", "^-")):
        steps, losses = zip(*v["curve"])
        ax.plot(steps, losses, style, label=name)
    ax.axhline(g["teacher_val_loss"], color="gray", ls=":", label="teacher")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss (10 batches)")
    ax.set_title(f"GPT student ({g['student_parameters']:,} parameters)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(folder, "compress_distill_gpt.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(folder="runs/compress", path="runs/compress/results.md", figures="runs/compress/figures"):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    os.makedirs(figures, exist_ok=True)
    R = {n: _load(folder, n) for n in ("costs", "finetune", "lora", "distill-bert", "quantize-bert",
                                        "prune-bert", "gpt-teacher", "distill-gpt", "quantize-gpt", "qat-gpt")}
    out = ["# Making models smaller and cheaper: measured results (issue 5)", "",
           "Produced by the command under each table (`python -m minilm.compress all` runs them in order),",
           "then `python -m minilm.compress report`, from the JSON records in `runs/compress/`. Machine: "
           f"{platform.machine()} Linux, 2 CPU cores shared with other jobs, NumPy backend, float32.",
           "Held-out data: the sentiment set's `test` split (140 sentences: one sentence = 0.71 accuracy",
           "points) and the last 10% of the bundled pydoc corpus for the GPT (40 fixed random windows",
           "of 64 characters x 12).", "",
           "Threads: the runs set `OPENBLAS_NUM_THREADS=1`. On this shared machine two OpenBLAS threads",
           "competing with other processes made a 832x384x384 matmul take over a second instead of",
           "6 ms; one thread per process avoids that. Wall times are single-thread times on a machine",
           "whose load average was 4 to 10 from other jobs (two of these experiments also ran side by",
           "side), so they are upper bounds: expect them 2-4x shorter on an idle 2-core laptop.", ""]

    # ---- distillation
    out += ["## 1. Knowledge distillation", ""]
    d = R["distill-bert"]
    if d:
        res = d["results"]
        out += ["### Sentiment classifier: tiny BERT student, MiniLM-L6 teacher", "",
                f"Teacher: all-MiniLM-L6-v2 fine-tuned on the 420 training sentences ({d['teacher_parameters']:,} "
                f"parameters, test accuracy {d['teacher_accuracy']:.1f}%). Student: a 2-layer, 128-wide, 2-head BERT "
                f"({d['student_parameters']:,} parameters, 5.2x smaller, 3.9 M of them the WordPiece embedding), "
                f"random initialisation, trained {d['epochs']} epochs on the same 420 sentences, AdamW lr 1e-3, "
                f"batch 16. Distillation: T = {d['temperature']}, alpha = {d['alpha']}; the hidden-state variant "
                f"adds the MSE between student layer l (projected 128 -> 384 by a learned Linear) and teacher "
                f"layer m(l) = {{0->2, 1->5}}, weight {d['hidden_weight']}, over the real (non-padding) tokens.",
                f"Mean and spread over {d['seeds']} seed(s) (the same seeds for every variant):", "",
                "| student trained on | test accuracy (%) | runs |", "|---|---|---|"]
        for k, v in res.items():
            out.append(f"| {k} | {v['mean']:.1f} +- {v['std']:.1f} | {', '.join(f'{x:.1f}' for x in v['runs'])} |")
        conf = d.get("teacher_train_mean_max_prob")
        if conf:
            out += ["", "Soft targets alone barely help here, and the reason is visible in the teacher's outputs on the "
                    f"training sentences: it gets {d.get('teacher_train_accuracy', 100):.0f}% of them right, with mean "
                    f"top-class probability {conf.get('T=1', float('nan')):.3f} at T = 1 and "
                    f"{conf.get('T=2', float('nan')):.3f} at T = 2. With two classes a soft target is a single "
                    "number per sentence, and it agrees with the label on every training sentence, so there is "
                    "little 'dark knowledge' to pass on (Hinton et al.'s gains come from many classes, or from "
                    "an unlabelled transfer set). The teacher's hidden states carry far more (384 numbers per "
                    "token per mapped layer), and matching them is what lifts the student."]
        out += ["", _how(d), ""]
        extra = d.get("other_settings")
        if extra:
            out += ["Other settings tried (1 seed):", ""] + [f"- {line}" for line in extra] + [""]
    else:
        out.append(_missing("distill-bert"))
    g = R["distill-gpt"]
    if g:
        out += ["### Character-level GPT on the pydoc corpus", "",
                f"Teacher: 4 layers x 128, 4 heads ({g['teacher_parameters']:,} parameters), validation loss "
                f"{g['teacher_val_loss']:.3f} (perplexity {g['teacher_val_ppl']:.2f}). Student: 2 layers x 64, 2 heads "
                f"({g['student_parameters']:,} parameters), {g['steps']} steps of batch 12 x 64 characters, AdamW "
                f"lr 2e-3 cosine. Distillation: T = {g['temperature']}, alpha = {g['alpha']} (soft targets at every "
                f"position), hidden weight {g['hidden_weight']} (64 -> 128 projections, layers {{0->1, 1->3}}).", "",
                "| student trained on | val loss | val perplexity | training time |", "|---|---|---|---|"]
        for k, v in g["results"].items():
            out.append(f"| {k} | {v['val_loss']:.4f} | {v['val_ppl']:.3f} | {v['train_s']:.0f} s |")
        fig = _plot_distill_gpt(g, figures)
        out += ["", f"![validation loss during training]({fig})", "",
                "Training times include the teacher's forward pass for the distilled students, and vary with "
                "the shared machine's load (other jobs ran at the same time).", "", _how(g), ""]
    else:
        out.append(_missing("distill-gpt"))

    # ---- quantisation
    out += ["## 2. Int8 quantisation", ""]
    q = R["quantize-bert"]
    if q:
        out += ["### Fine-tuned MiniLM-L6 classifier, post-training quantisation", "",
                "Every Linear (q, k, v, output, feed-forward, pooler, classifier) and every Embedding quantised; "
                "LayerNorms and biases stay float32. Activations are quantised per row on the fly and "
                "multiplied as int8 x int8 with int32 sums (computed here through the exact float64 path, which "
                "the tests check equals int32 accumulation bit for bit).", "",
                "| weights | test accuracy (%) | checkpoint file | ratio |", "|---|---|---|---|",
                f"| float32 | {q['float_accuracy']:.1f} | {_mb(q['float_file_bytes'])} | 1.00x |"]
        for r in q["rows"]:
            out.append(f"| int8 {r['scheme']}, {r['granularity'].replace('_', '-')} | {r['test_accuracy']:.1f} | "
                       f"{_mb(r['file_bytes'])} | {q['float_file_bytes'] / r['file_bytes']:.2f}x |")
        out += ["", f"Integer path with real int32 accumulation (symmetric per-channel): accuracy "
                f"{q['int32_path_accuracy']:.1f}%, test-set forward {q['int32_path_eval_s']} s, against "
                f"{q['float_eval_s']} s in float32 (NumPy has no integer BLAS: the int8 path saves memory, not "
                f"time, here). Weight-only int8 (dequantise, then float matmul): {q['weight_only_accuracy']:.1f}% "
                f"in {q['weight_only_eval_s']} s.", "", _how(q), ""]
    else:
        out.append(_missing("quantize-bert"))
    q = R["quantize-gpt"]
    if q:
        out += ["### Character-level GPT, post-training quantisation", "",
                "| weights | val loss | val perplexity | change | checkpoint file | ratio |", "|---|---|---|---|---|---|",
                f"| float32 | {q['float_val_loss']:.4f} | {q['float_val_ppl']:.4f} | | {_mb(q['float_file_bytes'])} | 1.00x |"]
        for r in q["rows"]:
            out.append(f"| int8 {r['scheme']}, {r['granularity'].replace('_', '-')} | {r['val_loss']:.4f} | "
                       f"{r['val_ppl']:.4f} | {r['ppl_change_percent']:+.2f}% | {_mb(r['file_bytes'])} | "
                       f"{q['float_file_bytes'] / r['file_bytes']:.2f}x |")
        out += ["", "(The tied LM head reads the int8 token table through its dequantised view.)", "", _how(q), ""]
    else:
        out.append(_missing("quantize-gpt"))
    q = R["qat-gpt"]
    if q:
        out += ["### Fewer bits: post-training quantisation vs quantisation-aware training (GPT)", "",
                f"Block Linear weights at 4 and 3 bits (symmetric per-channel, stored in int8), embeddings float. "
                f"QAT fine-tunes the float model {q['steps']} steps through fake quantisation (straight-through "
                f"gradients) and then converts; the control fine-tunes the same steps without fake quantisation "
                f"and then applies PTQ. Float validation loss {q['float_val_loss']:.4f}.", "",
                "| weight bits | PTQ | fine-tune, then PTQ | QAT |", "|---|---|---|---|"]
        for r in q["rows"]:
            out.append(f"| {r['bits']} | {r['ptq_val_loss']:.4f} | {r['finetune_then_ptq_val_loss']:.4f} | "
                       f"{r['qat_val_loss']:.4f} |")
        out += ["", "The extra steps alone lower the loss too (the teacher had only 1500 steps), which is why the "
                "control is there: QAT beats fine-tune-then-PTQ by "
                + " and ".join(f"{r['finetune_then_ptq_val_loss'] - r['qat_val_loss']:.3f} at {r['bits']} bits"
                               for r in q["rows"]) + ", because it learns weights that survive the rounding.",
                "", _how(q), ""]

    # ---- pruning
    out += ["## 3. Pruning", ""]
    p = R["prune-bert"]
    if p:
        out += [f"![accuracy against sparsity]({p['figure']})", "",
                "Fine-tuned MiniLM-L6 classifier, no retraining after pruning. Left: magnitude pruning of the "
                "encoder's Linear weights (36 matrices, 10.6 M weights), one global threshold or the same "
                "fraction per layer. Right: heads ranked by Michel et al.'s importance I_h = sum over training "
                "examples of |dL/dg_h| (normalised per layer, computed once on the 420 training sentences in "
                f"{p['importance_s']:.0f} s) and removed from the lowest up, each layer keeping at least one head; "
                "removing a head shrinks W_q, W_k, W_v (columns) and W_o (rows). The dotted line removes the "
                "same number of random heads (a fresh random draw at each point, so it is not monotone).", "",
                "| weights zeroed (global) | accuracy | weights zeroed (per layer) | accuracy |", "|---|---|---|---|"]
        for a, b in zip(p["magnitude"]["global"], p["magnitude"]["layer"]):
            out.append(f"| {100 * a['sparsity']:.0f}% | {a['accuracy']:.1f} | {100 * b['sparsity']:.0f}% | {b['accuracy']:.1f} |")
        out += ["", "| heads removed | accuracy (importance) | parameters removed | accuracy (random heads) |",
                "|---|---|---|---|"]
        rand = {round(r["fraction"], 3): r["accuracy"] for r in p["random_heads"]}
        for h in p["heads"]:
            r = rand.get(round(h["fraction"], 3))
            out.append(f"| {h['heads_removed']}/{p['n_heads']} ({100 * h['fraction']:.0f}%) | {h['accuracy']:.1f} | "
                       f"{h['parameters_removed']:,} | {'' if r is None else f'{r:.1f}'} |")
        out += ["", _how(p), ""]
    else:
        out.append(_missing("prune-bert"))

    # ---- LoRA
    out += ["## 4. LoRA fine-tuning of MiniLM-L6", ""]
    l, f = R["lora"], R["finetune"]
    if l and f:
        out += [f"all-MiniLM-L6-v2 (the real checkpoint, via `minilm.pretrained`) with a new 2-class head, on the "
                f"420 training sentences. LoRA: rank {l['rank']}, alpha {l['alpha']}, on all {l['layers']} Linear "
                f"layers of the 6 blocks (q, k, v, attention output, both feed-forward maps), base weights frozen; "
                f"trained: the adapters, the pooler and the classifier.", "",
                "| method | trainable parameters | % of total | epochs, lr | test accuracy (%) |", "|---|---|---|---|---|",
                f"| full fine-tuning | {f['trainable']:,} | 100 | {f['epochs']}, {f['lr']} | {f['test_accuracy']:.1f} |",
                f"| LoRA r={l['rank']} | {l['trainable']:,} | {l['percent']:.2f} | {l['epochs']}, {l['lr']} | "
                f"{l['test_accuracy']:.1f} |",
                f"| LoRA merged into W for inference (plain Linear layers) | - | - | - | {l['merged_test_accuracy']:.1f} |", "",
                f"Total with adapters: {l['total']:,} parameters; after merging: {l['base_parameters']:,}.", "",
                "Full fine-tuning: " + _how(f), "", "LoRA: " + _how(l), ""]
    else:
        out.append(_missing("finetune / lora"))

    # ---- costs
    out += ["## 5. What a config costs (`minilm.costs`)", ""]
    c = R["costs"]
    if c:
        out += ["Parameters exact (tests: GPT-2 small 124,439,808 and BERT-base 109,482,240 as published, and "
                "equal to `num_parameters()` of minilm's models). FLOPs per token of training at context T: "
                "`exact` = every matmul of the implementation x 3 (equal to torch's FlopCounterMode on "
                "transformers' models, tested), Kaplan et al. 2020 (2N + 2 L T C forward, x3), 6N, Chinchilla "
                "appendix F. Memory: fp32 AdamW = weights + grads + m + v (16 bytes/parameter); mixed precision "
                "as ZeRO counts it (16 bytes/parameter); activations for batch 8 (minilm's own caches for GPT, "
                "Korthikanti et al. 2022 16-bit formula for BERT).", "",
                "| model | T | parameters | exact | Kaplan | 6N | Chinchilla | AdamW fp32 | activations (B=8) |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in c["rows"]:
            out.append(f"| {r['model']} | {r['T']} | {r['params']:,} | {r['train_flops_per_token_exact']:.3g} | "
                       f"{r['train_flops_per_token_kaplan']:.3g} | {r['train_flops_per_token_6N']:.3g} | "
                       f"{r['train_flops_per_token_chinchilla']:.3g} | {r['adam_fp32_bytes'] / 2**20:,.0f} MiB | "
                       f"{r['activation_bytes_B8'] / 2**20:,.0f} MiB |")
        out += ["", _how(c), ""]
    else:
        out.append(_missing("costs"))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(out) + "\n")
    return path
