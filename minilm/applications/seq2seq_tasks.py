"""Two applications of the encoder-decoder Transformer, on data the project makes itself.

    python -m minilm seq2seq translate [--steps N] [--out DIR]    # English -> French fragment
    python -m minilm seq2seq summarize [--steps N] [--out DIR]    # news passage -> headline

or from Python:

    from minilm.seq2seq_tasks import run_task
    results = run_task("translate", steps=2000, out="runs/translate")

Each run trains with the Trainer (progress bar), then decodes the test split with beam search
and reports BLEU and exact match (translation) or ROUGE (summarisation). The run folder gets
the model (save_pretrained), the vocabularies, a loss plot, samples and results.json.
The data (see minilm.data.synthetic) is generated from a seed, so a run is reproducible.
"""
import argparse
import json
import os
import time
from dataclasses import dataclass

from ..data.synthetic import (Seq2SeqData, Vocab, detokenize_french, make_headline_pair,
                             make_splits, make_translation_pair)


@dataclass
class TaskRecipe:
    """Data, model and training settings of one application."""
    make_pair: object                  # rng -> (source, target) strings
    sizes: tuple                       # train / valid / test pairs
    d_model: int                       # model width
    nhead: int                         # attention heads
    num_layers: int                    # encoder layers = decoder layers
    dim_feedforward: int               # feed-forward width
    dropout: float                     # the paper's 0.1
    label_smoothing: float             # the paper's 0.1
    steps: int                         # default number of optimiser steps
    batch_size: int                    # sentence pairs per step
    lr: float                          # peak learning rate (reached after `warmup` steps)
    warmup: int                        # warm-up steps of the noam schedule
    max_new_tokens: int                # decoding limit
    detokenize: object = None          # target text -> display text


RECIPES = {
    "translate": TaskRecipe(make_translation_pair, (20000, 1000, 1000), d_model=64, nhead=4,
                            num_layers=2, dim_feedforward=256, dropout=0.1, label_smoothing=0.1,
                            steps=2000, batch_size=64, lr=2e-3, warmup=200, max_new_tokens=24,
                            detokenize=detokenize_french),
    "summarize": TaskRecipe(make_headline_pair, (20000, 1000, 1000), d_model=64, nhead=4,
                            num_layers=2, dim_feedforward=256, dropout=0.1, label_smoothing=0.1,
                            steps=1500, batch_size=48, lr=2e-3, warmup=200, max_new_tokens=16),
}


def build_model(recipe, data, seed=0, dtype="float32"):
    from ..models import Seq2SeqTransformer, TransformerConfig
    src_len, tgt_len = data.max_lengths()
    config = TransformerConfig(
        src_vocab_size=len(data.src_vocab), tgt_vocab_size=len(data.tgt_vocab),
        d_model=recipe.d_model, nhead=recipe.nhead, num_encoder_layers=recipe.num_layers,
        num_decoder_layers=recipe.num_layers, dim_feedforward=recipe.dim_feedforward,
        dropout=recipe.dropout, label_smoothing=recipe.label_smoothing,
        max_position_embeddings=max(src_len, tgt_len, recipe.max_new_tokens) + 8,
        pad_token_id=data.tgt_vocab.pad_id, bos_token_id=data.tgt_vocab.bos_id,
        eos_token_id=data.tgt_vocab.eos_id, seed=seed)
    return Seq2SeqTransformer(config, dtype=dtype)


def decode_split(model, data, split, num_beams=4, max_new_tokens=32, length_penalty=1.0,
                 limit=None):
    """Translate a split's sources; returns (hypotheses, references, sources) as strings."""
    hyps, refs, srcs = [], [], []
    pairs = {"train": data.train, "valid": data.valid, "test": data.test}[split]
    for ids, mask, batch_refs in data.source_batches(split):
        out = model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             num_beams=num_beams, length_penalty=length_penalty)
        hyps += [data.tgt_vocab.decode(row) for row in out]
        refs += batch_refs
        if limit is not None and len(hyps) >= limit:
            break
    srcs = [s for s, _ in pairs[:len(hyps)]]
    return hyps, refs, srcs


def score(task, hyps, refs):
    """Exact match and BLEU (translation) or ROUGE (summarisation), on the tokenised text."""
    from ..evaluation.metrics import corpus_bleu, rouge_scores
    exact = sum(h == r for h, r in zip(hyps, refs)) / len(refs)
    results = {"exact_match": exact}
    if task == "translate":
        results["bleu"] = corpus_bleu(hyps, refs)
    else:
        results.update(rouge_scores(hyps, refs))
    return results


def run_task(task, steps=None, out=None, seed=0, num_beams=4, progress=True, verbose=True):
    """Make the data, train, decode the test split; write the run folder; return results."""
    from ..training.optim import AdamW, noam
    from ..training.trainer import Trainer
    from ..viz import plot_loss

    if task not in RECIPES:
        raise ValueError(f"unknown task {task!r}: choose one of {sorted(RECIPES)}")
    recipe = RECIPES[task]
    steps = recipe.steps if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    out = out or os.path.join("runs", f"seq2seq-{task}")
    os.makedirs(out, exist_ok=True)
    say = print if verbose else (lambda *a, **k: None)

    train, valid, test = make_splits(recipe.make_pair, recipe.sizes, seed=seed)
    data = Seq2SeqData(train, valid, test, batch_size=recipe.batch_size)
    model = build_model(recipe, data, seed=seed)
    say(f"{task}: {len(train)} / {len(valid)} / {len(test)} pairs, vocabularies "
        f"{len(data.src_vocab)} -> {len(data.tgt_vocab)} words; model: "
        f"{model.num_parameters():,} parameters; run folder: {out}")

    # "Attention Is All You Need" section 5.3: Adam(0.9, 0.98, 1e-9), warm-up then 1/sqrt(step).
    # noam's peak, factor / sqrt(d_model * warmup), is set to recipe.lr through the factor.
    opt = AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0)
    factor = recipe.lr * (recipe.d_model * recipe.warmup) ** 0.5
    trainer = Trainer(model, opt, data.train_batch, data.valid_batch, max_steps=steps,
                      lr_schedule=lambda step: noam(step + 1, recipe.d_model, recipe.warmup, factor),
                      grad_clip=1.0, eval_every=max(steps // 5, 1), eval_steps=5, log_every=10,
                      progress=progress, seed=seed)
    t0 = time.perf_counter()
    history = trainer.fit()
    train_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    hyps, refs, srcs = decode_split(model, data, "test", num_beams=num_beams,
                                    max_new_tokens=recipe.max_new_tokens)
    decode_seconds = time.perf_counter() - t0
    results = score(task, hyps, refs)
    results.update(task=task, steps=steps, train_seconds=round(train_seconds, 1),
                   decode_seconds=round(decode_seconds, 1), num_beams=num_beams,
                   test_size=len(refs), parameters=model.num_parameters(),
                   final_train_loss=history[-1]["loss"],
                   final_eval_loss=next(h["eval_loss"] for h in reversed(history) if "eval_loss" in h))

    # the run folder
    model.save_pretrained(os.path.join(out, "model"))
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({"source": data.src_vocab.to_dict(), "target": data.tgt_vocab.to_dict()}, f,
                  ensure_ascii=False)
    plot_loss(history, os.path.join(out, "loss.png"),              # the label-smoothed loss:
              title=f"seq2seq {task} (label smoothing {recipe.label_smoothing})")  # floor > 0
    show = recipe.detokenize or (lambda s: s)
    with open(os.path.join(out, "samples.txt"), "w", encoding="utf-8") as f:
        for s, h, r in list(zip(srcs, hyps, refs))[:50]:
            f.write(f"source:    {s}\noutput:    {show(h)}\nreference: {show(r)}\n"
                    f"{'(exact)' if h == r else '(differs)'}\n\n")
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)

    for s, h, r in list(zip(srcs, hyps, refs))[:3]:
        say(f"  {s}\n    -> {show(h)}" + ("" if h == r else f"\n       (reference: {show(r)})"))
    metric = (f"BLEU {results['bleu']:.2f}" if task == "translate" else
              f"ROUGE-1/2/L {results['rouge1']:.3f} / {results['rouge2']:.3f} / {results['rougeL']:.3f}")
    say(f"test: {metric}, exact match {100 * results['exact_match']:.1f}% "
        f"({num_beams} beams); training {train_seconds:.0f} s; wrote {out}")
    return results


def load_run(folder, dtype="float32"):
    """(model, source Vocab, target Vocab) from a run folder written by run_task."""
    from ..models import Seq2SeqTransformer
    model = Seq2SeqTransformer.from_pretrained(os.path.join(folder, "model"), dtype=dtype)
    with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
        v = json.load(f)
    return model, Vocab.from_dict(v["source"]), Vocab.from_dict(v["target"])


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m minilm seq2seq",
        description="Train the encoder-decoder Transformer on generated data and score it on "
                    "a held-out test split.")
    parser.add_argument("task", choices=sorted(RECIPES),
                        help="translate: English -> French grammar fragment (BLEU, exact match); "
                             "summarize: news passage -> headline (ROUGE)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the recipe's)")
    parser.add_argument("--out", default=None, help="run folder (default: runs/seq2seq-<task>)")
    parser.add_argument("--beams", type=int, default=4, help="beam width for the test split (1 = greedy)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.beams < 1:
        parser.error("--beams must be >= 1")
    run_task(args.task, steps=args.steps, out=args.out, seed=args.seed, num_beams=args.beams,
             progress=not args.no_progress)
    return 0
