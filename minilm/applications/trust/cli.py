"""`python -m minilm trust dp | fedavg | clip | seat | mlm-probe | explain`: the trustworthy-model
experiments, each a few minutes at most on two CPU cores, each writing results.json and plots
into its run folder (default runs/trust/<command>).

    python -m minilm trust dp          # accuracy against epsilon, DP-SGD on the sentiment set
    python -m minilm trust fedavg      # FedAvg accuracy against rounds, IID vs Dirichlet label skew
    python -m minilm trust clip        # a tiny CLIP on drawn shapes; retrieval recall@1/5
    python -m minilm trust seat        # WEAT / SEAT effect sizes and p-values on all-MiniLM-L6-v2
    python -m minilm trust mlm-probe   # masked-LM pronoun probe on a BERT pre-trained on a skewed corpus
    python -m minilm trust explain     # attention maps, rollout and five attributions for one review
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np


def _out(args, name):
    out = args.out or os.path.join("runs", "trust", name)
    os.makedirs(out, exist_ok=True)
    return out


def _write_json(obj, path):
    def default(x):
        if isinstance(x, (np.integer,)):
            return int(x)
        if isinstance(x, (np.floating,)):
            return float(x)
        if isinstance(x, np.ndarray):
            return x.tolist()
        return str(x)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=default)


def _plt():
    from ...viz import pyplot
    return pyplot()


def _floats(s):
    return [float(x) for x in s.split(",") if x.strip()]


def _sentiment_for(kind, out):
    """(train, test, make_model(seed)) for 'head' (frozen MiniLM features + logistic regression)
    or 'tinybert' (a small BERT from scratch on word ids)."""
    from .common import (FeatureClassifier, minilm_sentence_features, sentiment_arrays,
                               tiny_bert_classifier)
    tok, train, test = sentiment_arrays()
    if kind == "head":
        features = {split: minilm_sentence_features(data["texts"],
                                                    cache_path=os.path.join(out, f"feat_{split}.npy"))
                    for split, data in (("train", train), ("test", test))}
        ftrain = {"features": features["train"], "labels": train["labels"]}
        ftest = {"features": features["test"], "labels": test["labels"]}
        return ftrain, ftest, lambda seed: FeatureClassifier(ftrain["features"].shape[1], 0, seed=seed)
    return train, test, lambda seed: tiny_bert_classifier(tok.vocab_size, hidden_size=32, intermediate_size=64,
                                                          dropout=0.0, seed=seed)


# ---------------------------------------------------------------------------------------------
# dp
# ---------------------------------------------------------------------------------------------

def plot_dp(results, path, delta):
    """Accuracy against epsilon, one line per model, non-private runs dashed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for kind in dict.fromkeys(r["model"] for r in results):
        rows = [r for r in results if r["model"] == kind]
        if not rows:
            continue
        finite = [r for r in rows if not math.isinf(r["epsilon"])]
        ax.errorbar([r["epsilon"] for r in finite], [r["test_acc_mean"] for r in finite],
                    yerr=[r["test_acc_std"] for r in finite], marker="o", capsize=3,
                    label={"head": "logistic regression on frozen MiniLM features",
                           "tinybert": "tiny BERT from scratch"}[kind])
        base = [r for r in rows if math.isinf(r["epsilon"])]
        if base:
            ax.axhline(base[0]["test_acc_mean"], ls="--", lw=0.8, color=ax.lines[-1].get_color())
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set_xscale("log")
    ticks = sorted({r["target_epsilon"] for r in results if not math.isinf(r["target_epsilon"])})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel(f"epsilon (delta = {delta:g})")
    ax.set_ylabel("test accuracy")
    ax.set_title("DP-SGD on the sentiment set (dashed: non-private)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cmd_dp(args):
    from .privacy import noise_multiplier_for, train_dp
    out = _out(args, "dp")
    models = ["head", "tinybert"] if args.model == "both" else [args.model]
    results = []
    for kind in models:
        try:
            train, test, make_model = _sentiment_for(kind, out)
        except ModuleNotFoundError as e:                # the MiniLM checkpoint is not installed
            print(f"skipping the MiniLM-features model: {e}")
            continue
        N = len(train["labels"])
        if kind == "head":
            steps, lr, opt, batch = args.steps or 150, args.lr or 0.5, "sgd", args.batch_size or 128
        else:
            steps, lr, opt, batch = args.steps or 200, args.lr or 1e-3, "adam", args.batch_size or 64
        q = batch / N
        for eps in [math.inf] + sorted(_floats(args.epsilons), reverse=True):
            sigma = 0.0 if math.isinf(eps) else noise_multiplier_for(eps, q, steps, args.delta)
            accs, spent, t0 = [], None, time.perf_counter()
            for seed in range(args.seeds):
                model = make_model(seed)
                hist, spent = train_dp(model, train, steps, sigma, args.clip, q, lr=lr, optimizer=opt,
                                       momentum=0.9 if opt == "sgd" else 0.0,
                                       delta=args.delta, seed=seed,
                                       eval_data=test, eval_every=steps)
                accs.append(hist[-1]["test_acc"])
            row = {"model": kind, "target_epsilon": eps, "epsilon": spent, "noise_multiplier": sigma,
                   "sample_rate": q, "batch_size": batch, "steps": steps, "clip": args.clip,
                   "delta": args.delta,
                   "test_acc_mean": float(np.mean(accs)), "test_acc_std": float(np.std(accs)),
                   "test_accs": accs, "seconds": time.perf_counter() - t0}
            results.append(row)
            print(f"{kind:9s} epsilon={spent:7.2f} sigma={sigma:6.3f}  test accuracy "
                  f"{row['test_acc_mean']:.3f} +- {row['test_acc_std']:.3f} ({args.seeds} seeds, "
                  f"{row['seconds']:.0f} s)", flush=True)
    _write_json({"results": results}, os.path.join(out, "results.json"))
    plot_dp(results, os.path.join(out, "dp_accuracy_vs_epsilon.png"), args.delta)
    print(f"wrote {out}/results.json and dp_accuracy_vs_epsilon.png")
    return results


# ---------------------------------------------------------------------------------------------
# fedavg
# ---------------------------------------------------------------------------------------------

def cmd_fedavg(args):
    from .federated import dirichlet_split, fedavg, iid_split, label_histogram
    from .common import accuracy_of, train_classifier
    out = _out(args, "fedavg")
    train, test, make_model = _sentiment_for(args.model, out)
    lr = args.lr or (0.5 if args.model == "head" else 3e-3)
    opt = args.optimizer or ("sgd" if args.model == "head" else "adamw")
    N = len(train["labels"])
    names = ["IID"] + [f"Dirichlet alpha={a:g}" for a in _floats(args.alphas)]
    results = {name: {"curves": [], "label_histograms": []} for name in names}
    t0 = time.perf_counter()
    central = []
    for seed in range(args.seeds):
        splits = [iid_split(N, args.clients, seed=seed)]
        splits += [dirichlet_split(train["labels"], args.clients, a, seed=seed) for a in _floats(args.alphas)]
        for name, clients in zip(names, splits):
            hist = fedavg(make_model(seed), train, clients, args.rounds, args.fraction, args.local_epochs,
                          args.batch_size, lr, seed=seed, eval_data=test, eval_every=args.eval_every,
                          optimizer=opt)
            results[name]["rounds"] = [h["round"] for h in hist]
            results[name]["curves"].append([h["test_acc"] for h in hist])
            results[name]["label_histograms"].append(label_histogram(train["labels"], clients))
        model = make_model(seed)                         # the same model trained centrally, for reference
        train_classifier(model, train, epochs=args.local_epochs * args.rounds // 4, batch_size=args.batch_size,
                         lr=1e-2 if args.model == "head" else 3e-3, seed=seed)
        central.append(accuracy_of(model, test))
    for name, r in results.items():
        curves = np.asarray(r["curves"])
        r["mean"], r["std"] = curves.mean(0).tolist(), curves.std(0).tolist()
        marks = [len(r["rounds"]) // 4 - 1, len(r["rounds"]) // 2 - 1, len(r["rounds"]) - 1]
        print(f"{name:22s} mean test accuracy over {args.seeds} seeds: "
              + ", ".join(f"round {r['rounds'][i]} {r['mean'][i]:.3f}" for i in marks if i >= 0), flush=True)
    print(f"centralised training of the same model: {np.mean(central):.3f} +- {np.std(central):.3f}; "
          f"total {time.perf_counter() - t0:.0f} s")
    _write_json({"results": results, "central_acc": central, "args": vars(args), "lr": lr, "optimizer": opt},
                os.path.join(out, "results.json"))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for name, r in results.items():
        mean, std = np.asarray(r["mean"]), np.asarray(r["std"])
        ax.plot(r["rounds"], mean, label=name)
        ax.fill_between(r["rounds"], mean - std, mean + std, alpha=0.15)
    ax.axhline(np.mean(central), color="k", ls="--", lw=0.8, label="centralised")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    what = "logistic regression on MiniLM features" if args.model == "head" else "tiny BERT"
    ax.set_title(f"FedAvg ({what}): {args.clients} clients, {args.fraction:g} sampled a round,\n"
                 f"{args.local_epochs} local epochs; mean +- std of {args.seeds} seeds", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "fedavg_accuracy_vs_rounds.png"))
    plt.close(fig)
    print(f"wrote {out}/results.json and fedavg_accuracy_vs_rounds.png")
    return results


# ---------------------------------------------------------------------------------------------
# clip
# ---------------------------------------------------------------------------------------------

def cmd_clip(args):
    from ..multimodal import CLIPConfig, CLIPModel, ShapesData, retrieval_recall, train_clip
    out = _out(args, "clip")
    data = ShapesData(size=args.image_size)
    cfg = CLIPConfig(vocab_size=data.tokenizer.vocab_size, image_size=args.image_size,
                     patch_size=args.patch_size, seed=args.seed)
    model = CLIPModel(cfg)
    print(f"CLIP: {model.num_parameters():,} parameters; {len(data.kinds)} kinds of picture")
    t0 = time.perf_counter()
    hist = train_clip(model, data, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      eval_every=max(1, args.steps // 10),
                      log=lambda r: print(f"step {r['step']:5d} loss {r['loss']:.3f} "
                                          f"scale {r['logit_scale']:.1f} i2t R@1 {r['i2t_r1']:.3f} "
                                          f"t2i R@1 {r['t2i_r1']:.3f}", flush=True))
    seconds = time.perf_counter() - t0
    sets = [retrieval_recall(model, data, seed=10000 + i) for i in range(args.eval_sets)]
    rec = {way: {k: float(np.mean([r[way][k] for r in sets])) for k in (1, 5)}
           for way in ("image_to_text", "text_to_image")}
    rec.update(n=sets[0]["n"], eval_sets=args.eval_sets,
               i2t_r1_each=[r["image_to_text"][1] for r in sets],
               t2i_r1_each=[r["text_to_image"][1] for r in sets])
    print(f"{args.eval_sets} fresh held-out sets of {rec['n']} images (one per kind) against the {rec['n']} "
          f"captions, mean: image->text R@1 {rec['image_to_text'][1]:.3f} R@5 {rec['image_to_text'][5]:.3f}; "
          f"text->image R@1 {rec['text_to_image'][1]:.3f} R@5 {rec['text_to_image'][5]:.3f} "
          f"(chance R@1 {1 / rec['n']:.3f}; training took {seconds:.0f} s)")
    _write_json({"recall": rec, "history": hist, "seconds": seconds, "config": vars(cfg),
                 "parameters": model.num_parameters()}, os.path.join(out, "results.json"))
    plt = _plt()
    rng = np.random.default_rng(7)
    kinds = rng.choice(len(data.kinds), 8, replace=False)
    fig, axes = plt.subplots(1, 8, figsize=(12, 2), dpi=110)
    for ax, k, img in zip(axes, kinds, data.images_of(kinds, rng)):
        ax.imshow(img)
        ax.set_title(data.captions[k].replace(" at the", "\nat the").replace(" in the", "\nin the"), fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "clip_samples.png"))
    plt.close(fig)
    print(f"wrote {out}/results.json and clip_samples.png")
    return rec


# ---------------------------------------------------------------------------------------------
# seat
# ---------------------------------------------------------------------------------------------

def cmd_seat(args):
    from .bias import WEAT_TESTS, seat
    try:
        from ...pretrained import load_minilm
        model, tok = load_minilm()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        print(f"seat needs the all-MiniLM-L6-v2 checkpoint: {e}")
        return None
    out = _out(args, "seat")
    results = []
    for test in args.tests.split(","):
        for templates in (True, False):
            r = seat(model, tok, test, n_samples=args.samples, seed=args.seed, templates=templates)
            r["unit"] = "sentences (SEAT)" if templates else "bare words"
            results.append(r)
            print(f"{test:6s} {WEAT_TESTS[test]['name']:45s} {r['unit']:17s} d = {r['effect_size']:+.3f}  "
                  f"p = {r['p_value']:.2g} ({'exact' if r['exact'] else 'sampled'}, n = {r['sizes']['X']})",
                  flush=True)
    _write_json(results, os.path.join(out, "results.json"))
    return results


# ---------------------------------------------------------------------------------------------
# mlm-probe
# ---------------------------------------------------------------------------------------------

def cmd_mlm_probe(args):
    from .bias import PROFESSION_TEMPLATES, PROFESSIONS, gendered_corpus, mlm_template_probe
    from ...models import BertConfig, BertForMaskedLM
    from ...training.optim import AdamW
    from ...training.trainer import Trainer
    from .common import encode, word_tokenizer
    out = _out(args, "mlm-probe")
    corpus = gendered_corpus(n=4000, skew=args.skew, seed=args.seed)
    tok = word_tokenizer(corpus)
    enc = encode(tok, corpus, max_length=16)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=16, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, seed=args.seed)
    model = BertForMaskedLM(cfg)
    opt = AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    special = np.isin(ids, [tok.cls_token_id, tok.sep_token_id, tok.pad_token_id])

    def masked_batch(rng):                              # 64 random rows, 15% of tokens masked
        b = rng.choice(len(ids), 64, replace=False)
        x, m = ids[b].copy(), mask[b]
        pick = (rng.random(x.shape) < 0.15) & ~special[b]
        labels = np.where(pick, x, -100)
        x[pick] = tok.mask_token_id                     # every picked token masked (no 80/10/10)
        return {"input_ids": x, "attention_mask": m, "labels": labels}

    def report(trainer):
        if trainer.step % max(1, args.steps // 5) == 0:
            print(f"step {trainer.step} MLM loss {trainer.last_output.loss:.3f}", flush=True)

    t0 = time.perf_counter()
    Trainer(model, opt, masked_batch, max_steps=args.steps, seed=args.seed, progress=False,
            after_step=report).fit()
    templates = [t.format(p) for p in PROFESSIONS for t in PROFESSION_TEMPLATES]
    probe = mlm_template_probe(model, tok, templates, ("he", "she"))
    by_job = {}
    for p in PROFESSIONS:
        by_job[p] = float(np.mean([r["log_ratio"] for r in probe if f" {p}." in r["template"]]))
    target = math.log((1 - args.skew) / args.skew)
    print(f"log P(he) - log P(she) per profession (corpus: {args.skew:.0%} of 'female' jobs take she, "
          f"i.e. {target:+.2f} for those, {-target:+.2f} for the others; pre-training took "
          f"{time.perf_counter() - t0:.0f} s):")
    for p, v in by_job.items():
        print(f"  {p:10s} {v:+.2f}")
    _write_json({"probe": probe, "by_profession": by_job, "skew": args.skew}, os.path.join(out, "results.json"))
    return by_job


# ---------------------------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------------------------

def cmd_explain(args):
    from .interpret import (attention_maps, attention_rollout, explain, plot_attention_maps,
                            plot_attributions)
    from .common import accuracy_of, sentiment_arrays, tiny_bert_classifier, train_classifier
    out = _out(args, "explain")
    if args.model_dir:
        from ...models import BertForSequenceClassification
        from ...tokenizers import BertTokenizer
        model = BertForSequenceClassification.from_pretrained(args.model_dir)
        tok = BertTokenizer.from_pretrained(args.model_dir)
    elif args.minilm:
        from ...models import BertForSequenceClassification
        from ...pretrained import minilm_l6_path
        from ...tokenizers import BertTokenizer
        folder = minilm_l6_path()
        tok = BertTokenizer.from_pretrained(folder)
        _, train, test = sentiment_arrays(tok)
        model = BertForSequenceClassification.from_pretrained(folder, num_labels=2)
        model.train()
        t0 = time.perf_counter()
        train_classifier(model, train, epochs=args.minilm_epochs, batch_size=16, lr=5e-5, seed=args.seed,
                         log=lambda r: print(f"epoch {r['epoch']} loss {r['loss']:.3f}", flush=True))
        print(f"all-MiniLM-L6-v2 fine-tuned {args.minilm_epochs} epochs on the sentiment set in "
              f"{time.perf_counter() - t0:.0f} s: test accuracy {accuracy_of(model, test):.3f}")
        model.save_pretrained(os.path.join(out, "minilm-sentiment"))
        tok.save_pretrained(os.path.join(out, "minilm-sentiment"))
    else:
        tok, train, test = sentiment_arrays()
        model = tiny_bert_classifier(tok.vocab_size, hidden_size=64, num_layers=2, dropout=0.1, seed=args.seed)
        train_classifier(model, train, epochs=args.epochs, lr=1e-3, seed=args.seed)
        print(f"tiny BERT trained {args.epochs} epochs on the sentiment set: "
              f"test accuracy {accuracy_of(model, test):.3f}")
    enc = tok(args.text, return_tensors="np")
    ids = enc["input_ids"][0]
    tokens = tok.convert_ids_to_tokens(ids.tolist())
    model.eval()
    logits = model(enc["input_ids"]).logits
    from ...backend import to_numpy
    pred = int(to_numpy(logits)[0].argmax())
    target = pred if args.target is None else args.target
    print(f"text: {args.text!r}\nprediction: class {pred} "
          f"(logits {np.round(to_numpy(logits)[0], 3).tolist()}); explaining class {target}")
    res = explain(model, ids, target, tokenizer=tok, steps=args.ig_steps, n_samples=args.samples)
    header = f"{'token':>12s} " + " ".join(f"{m[:12]:>12s}" for m in res)
    print(header)
    for t, tokn in enumerate(tokens):
        print(f"{tokn:>12s} " + " ".join(f"{r.values[t]:12.4f}" for r in res.values()))
    ig = res["integrated_gradients"]
    print(f"integrated gradients: sum {ig.total:.4f} vs f(x) - f(baseline) {ig.score - ig.baseline_score:.4f} "
          f"(delta {ig.extra['delta']:.2e})")
    maps = attention_maps(model, ids)
    roll = attention_rollout(maps)[0, 0]
    print("attention rollout from [CLS]: " + ", ".join(f"{t} {v:.2f}" for t, v in zip(tokens, roll)))
    plot_attention_maps(maps, tokens, path=os.path.join(out, "attention_maps.png"), title=args.text)
    plt = _plt()
    fig, axes = plt.subplots(1, len(res) + 1, figsize=(3 * (len(res) + 1), 0.3 * len(tokens) + 1.5), dpi=110)
    for ax, (name, r) in zip(axes, res.items()):
        plot_attributions(tokens, r.values, ax=ax, title=name)
    plot_attributions(tokens, roll, ax=axes[-1], title="rollout ([CLS] row)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "attributions.png"))
    plt.close(fig)
    _write_json({"text": args.text, "tokens": tokens, "target": target,
                 "attributions": {k: r.values for k, r in res.items()}, "rollout_cls": roll},
                os.path.join(out, "results.json"))
    print(f"wrote {out}/attention_maps.png, attributions.png, results.json")
    return res


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m minilm trust", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("dp", help="DP-SGD accuracy against epsilon on the sentiment set")
    p.add_argument("--model", default="both", choices=["head", "tinybert", "both"],
                   help="head: logistic regression on frozen MiniLM sentence features (DP-SGD with momentum); "
                        "tinybert: a 1-layer BERT trained from scratch (DP-Adam)")
    p.add_argument("--epsilons", default="1,3,8", help="target epsilons (the non-private run is added)")
    p.add_argument("--delta", type=float, default=1e-4)
    p.add_argument("--clip", type=float, default=1.0, help="per-example clipping bound C")
    p.add_argument("--batch-size", type=int, default=None,
                   help="expected batch size, sampling rate = B / N (default: 128 head, 64 tinybert)")
    p.add_argument("--steps", type=int, default=None, help="default: 150 (head), 200 (tinybert)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default=None)

    p = sub.add_parser("fedavg", help="FedAvg accuracy against rounds, IID vs non-IID")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--alphas", default="0.1,1.0", help="Dirichlet concentrations of the non-IID splits")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--local-epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--model", default="head", choices=["head", "tinybert"],
                   help="head: logistic regression on frozen MiniLM features; "
                        "tinybert: small BERT from scratch")
    p.add_argument("--lr", type=float, default=None, help="default: 0.5 (head, SGD), 3e-3 (tinybert, AdamW)")
    p.add_argument("--optimizer", default=None, choices=["sgd", "adamw"], help="clients' local optimiser")
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--seeds", type=int, default=3, help="runs (splits, client sampling, init) averaged")
    p.add_argument("--out", default=None)

    p = sub.add_parser("clip", help="train a tiny CLIP on drawn shapes; retrieval recall")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--image-size", type=int, default=24)
    p.add_argument("--eval-sets", type=int, default=5, help="fresh held-out sets averaged for the recall")
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)

    p = sub.add_parser("seat", help="WEAT/SEAT effect sizes on all-MiniLM-L6-v2")
    p.add_argument("--tests", default="weat1,weat6,weat7,weat8")
    p.add_argument("--samples", type=int, default=100000, help="permutations when not exact")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)

    p = sub.add_parser("mlm-probe", help="pronoun probe on a small BERT pre-trained on a skewed corpus")
    p.add_argument("--skew", type=float, default=0.8)
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)

    p = sub.add_parser("explain", help="attention maps and attributions for one sentence")
    p.add_argument("--text",
                   default="The buffet was dismal, but the room turned out to be absolutely comfortable.")
    p.add_argument("--target", type=int, default=None, help="class to explain (default: the prediction)")
    p.add_argument("--model-dir", default=None, help="a fine-tuned BertForSequenceClassification folder "
                   "with vocab.txt (default: train a tiny BERT here)")
    p.add_argument("--epochs", type=int, default=10, help="tiny BERT training epochs")
    p.add_argument("--minilm", action="store_true",
                   help="fine-tune all-MiniLM-L6-v2 with a classifier head instead "
                        "(saved to OUT/minilm-sentiment)")
    p.add_argument("--minilm-epochs", type=int, default=2)
    p.add_argument("--ig-steps", type=int, default=50)
    p.add_argument("--samples", type=int, default=500, help="LIME / Kernel SHAP samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)

    args = parser.parse_args(argv)
    commands = {"dp": cmd_dp, "fedavg": cmd_fedavg, "clip": cmd_clip, "seat": cmd_seat,
                "mlm-probe": cmd_mlm_probe, "explain": cmd_explain}
    if args.command is None:
        parser.print_help()
        return 0
    commands[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
