"""Command line: `python -m minilm demo | train | sample | bench | seq2seq`.

    python -m minilm demo                 # train a small GPT on the bundled corpus (1-3 min)
    python -m minilm train --help         # every knob
    python -m minilm sample --run runs/demo --prompt "def "
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def _add_model_args(p, **defaults):
    d = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, max_iters=2000,
             lr=1e-3, min_lr=1e-4, warmup=100, weight_decay=0.1, dropout=0.0, grad_clip=1.0,
             eval_every=250, eval_iters=20)
    d.update(defaults)
    p.add_argument("--dataset", default="pydoc", choices=["pydoc", "tinyshakespeare"],
                   help="pydoc: Python's own documentation text, bundled with CPython (offline); "
                        "tinyshakespeare: downloaded once from its canonical URL")
    p.add_argument("--data-file", default=None, help="use this UTF-8 text file instead")
    p.add_argument("--arch", default="gpt2", choices=["gpt2", "llama"],
                   help="gpt2: GPT-2 (LayerNorm, learned positions, GELU MLP); llama: Llama "
                        "(RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases), by default "
                        "of GPT-2's parameter count at the same --n-layer/--n-embd/--n-head")
    p.add_argument("--n-kv-head", type=int, default=None,
                   help="llama: key/value heads, --n-head a multiple of it (default: n_head // 2 "
                        "when n_head is even, grouped-query attention; n_head: multi-head)")
    p.add_argument("--intermediate-size", type=int, default=None,
                   help="llama: SwiGLU width F (default: the F that gives GPT-2's parameter count)")
    p.add_argument("--rope-theta", type=float, default=None, help="llama: RoPE base (default 10000)")
    p.add_argument("--n-layer", type=int, default=d["n_layer"])
    p.add_argument("--n-head", type=int, default=d["n_head"])
    p.add_argument("--n-embd", type=int, default=d["n_embd"])
    p.add_argument("--block-size", type=int, default=d["block_size"], help="context length (n_positions)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"])
    p.add_argument("--max-iters", type=int, default=d["max_iters"])
    p.add_argument("--lr", type=float, default=d["lr"], help="peak learning rate (AdamW)")
    p.add_argument("--min-lr", type=float, default=d["min_lr"], help="cosine decays to this")
    p.add_argument("--warmup", type=int, default=d["warmup"], help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    p.add_argument("--dropout", type=float, default=d["dropout"])
    p.add_argument("--grad-clip", type=float, default=d["grad_clip"])
    p.add_argument("--eval-every", type=int, default=d["eval_every"])
    p.add_argument("--eval-iters", type=int, default=d["eval_iters"])
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--resume", default=None, help="a checkpoint folder written by --checkpoint-every")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", default=None, help="run folder (default: runs/<command>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--grad-accum", type=int, default=1,
                   help="split each rank's share of --batch-size (which is global) into this "
                        "many micro-batches; the update is the same")
    p.add_argument("--zero", type=int, default=0, choices=[0, 1],
                   help="1: shard AdamW's state across MPI ranks (ZeRO-1); run under "
                        "`mpiexec -n N python -m minilm train ...`")
    p.add_argument("--overlap", action="store_true",
                   help="under MPI: all-reduce gradient buckets during the backward pass")
    p.add_argument("--comm", default="auto", choices=["auto", "mpi", "nccl"],
                   help="under mpiexec: how ranks communicate. nccl: NCCL on GPUs through CuPy "
                        "(MINILM_BACKEND=cupy, one GPU per rank); mpi: MPI on host buffers; "
                        "auto: nccl on the CuPy backend when every rank has its own GPU, else mpi")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"],
                   help="fp16: float16 mixed precision (float16 forward/backward, float32 "
                        "master weights and accumulation, dynamic loss scaling); one process")
    p.add_argument("--loss-scale-interval", type=int, default=2000,
                   help="fp16: double the loss scale after this many steps without overflow "
                        "(PyTorch GradScaler's growth_interval)")


def llama_intermediate_size(vocab_size, n_positions, n_embd, n_layer, n_head, n_kv_head):
    """The SwiGLU width F that brings a Llama (tied head, no biases) nearest to the parameter
    count of GPT-2 of the same width, depth and heads. Per layer Llama has
    2 C^2 + 2 C H_kv D + 3 C F matrix entries against GPT-2's 12 C^2, and it has no position
    table (P C) and no biases, so F comes out a little above (10 C - 2 H_kv D) / 3."""
    from .evaluation.costs import count_parameters
    from .models import GPTConfig, LlamaConfig
    gpt = count_parameters(GPTConfig(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd,
                                     n_layer=n_layer, n_head=n_head))
    no_mlp = count_parameters(LlamaConfig(vocab_size=vocab_size, hidden_size=n_embd, intermediate_size=1,
                                          num_hidden_layers=n_layer, num_attention_heads=n_head,
                                          num_key_value_heads=n_kv_head, tie_word_embeddings=True)) \
        - 3 * n_embd * n_layer                                   # the F = 1 MLP taken out
    return max(1, round((gpt - no_mlp) / (3 * n_embd * n_layer)))


def build_model(args, vocab_size):
    """The char-level model `args` describe: GPT (--arch gpt2) or LlamaForCausalLM (--arch llama)."""
    from .models import GPT, GPTConfig, LlamaConfig, LlamaForCausalLM
    arch = getattr(args, "arch", "gpt2")
    if arch == "gpt2":
        for flag, value in (("--n-kv-head", args.n_kv_head), ("--intermediate-size", args.intermediate_size),
                            ("--rope-theta", args.rope_theta)):
            if value is not None:
                raise SystemExit(f"{flag} is a Llama setting: add --arch llama (GPT-2 has n_head key/value "
                                 "heads, a 4 n_embd MLP and learned positions)")
        config = GPTConfig(vocab_size=vocab_size, n_positions=args.block_size, n_embd=args.n_embd,
                           n_layer=args.n_layer, n_head=args.n_head, resid_pdrop=args.dropout,
                           embd_pdrop=args.dropout, attn_pdrop=args.dropout, seed=args.seed,
                           bos_token_id=0, eos_token_id=0)
        return GPT(config)
    if arch != "llama":
        raise SystemExit(f"--arch must be gpt2 or llama, got {arch!r}")
    if args.dropout:
        raise SystemExit(f"--dropout {args.dropout}: the Llama model has no dropout layers (Llama 3 and "
                         "Qwen3 train without); leave --dropout at 0 with --arch llama")
    if args.n_embd % args.n_head:
        raise SystemExit(f"--n-embd ({args.n_embd}) must be divisible by --n-head ({args.n_head})")
    H_kv = args.n_kv_head if args.n_kv_head is not None else (
        args.n_head // 2 if args.n_head % 2 == 0 else args.n_head)
    F = args.intermediate_size
    try:
        if F is None:
            F = llama_intermediate_size(vocab_size, args.block_size, args.n_embd, args.n_layer, args.n_head, H_kv)
        config = LlamaConfig(vocab_size=vocab_size, hidden_size=args.n_embd, intermediate_size=F,
                             num_hidden_layers=args.n_layer, num_attention_heads=args.n_head,
                             num_key_value_heads=H_kv, max_position_embeddings=args.block_size,
                             rope_theta=10000.0 if args.rope_theta is None else args.rope_theta,
                             tie_word_embeddings=True, seed=args.seed,
                             bos_token_id=0, eos_token_id=0)
    except ValueError as e:                              # GQA heads, odd head_dim: say which flag
        raise SystemExit(f"--arch llama: {e} (flags --n-head, --n-kv-head, --n-embd, --intermediate-size)") from None
    return LlamaForCausalLM(config)


def train_run(args, command="train", sample_prompt="\n"):
    """Train a char-level GPT or Llama (--arch) as configured by `args`; write the run folder; return it."""
    from .data import LMData, load_text
    from .training.dist import DataParallel, get_comm
    from .training.optim import AdamW, ZeroAdamW, cosine_with_warmup, param_groups_with_decay
    from .tokenizers import CharTokenizer
    from .training.trainer import Trainer
    from .viz import plot_loss

    comm = get_comm(kind=getattr(args, "comm", "auto"))   # MPI/NCCL under mpiexec -n N, else one process
    lead = comm.rank == 0                   # rank 0 prints and writes
    say = print if lead else (lambda *a, **k: None)
    out = args.out or os.path.join("runs", command)
    if lead:
        os.makedirs(out, exist_ok=True)
    text = load_text(args.dataset, args.data_file)
    tok = CharTokenizer.from_text(text)
    data = LMData(tok.encode(text), args.block_size, args.batch_size)
    model = build_model(args, tok.vocab_size)
    groups = param_groups_with_decay(model.named_parameters(), args.weight_decay)
    if args.zero:
        opt = ZeroAdamW(groups, lr=args.lr, betas=(0.9, 0.99), comm=comm)
    else:
        opt = AdamW(groups, lr=args.lr, betas=(0.9, 0.99))
    run_config = {k: v for k, v in vars(args).items() if k not in ("no_progress",)}
    precision = getattr(args, "precision", "fp32")
    scaler = None
    if precision == "fp16":
        if comm.world_size > 1 or args.zero or args.grad_accum != 1:
            raise SystemExit("--precision fp16 trains in one process: no mpiexec, --zero 0, "
                             "--grad-accum 1")
        from .training.precision import LossScaler
        scaler = LossScaler(growth_interval=args.loss_scale_interval)
    dp = DataParallel(model, comm, grad_accum=args.grad_accum, reduce=not args.zero,
                      config=run_config, overlap=args.overlap and comm.world_size > 1,
                      bucket_bytes=(1 << 20) if args.overlap else (4 << 20))       # rank 0's weights; same arguments checked
    warmup = min(args.warmup, args.max_iters)               # a very short run still gets a schedule
    schedule = lambda step: cosine_with_warmup(step, args.lr, args.min_lr, warmup, args.max_iters)
    say(f"corpus: {len(text):,} characters, vocabulary {tok.vocab_size}; "
        f"model: {model.num_parameters():,} parameters; run folder: {out}"
        + (f"; {comm.world_size} processes" if comm.world_size > 1 else ""))
    trainer = Trainer(model if precision == "fp16" else dp,      # fp16: one process, no wrapper
                      opt, data.train_batch, data.val_batch, max_steps=args.max_iters,
                      lr_schedule=schedule, grad_clip=args.grad_clip, eval_every=args.eval_every,
                      eval_steps=args.eval_iters, log_every=10,
                      checkpoint_dir=os.path.join(out, "checkpoints") if args.checkpoint_every else None,
                      checkpoint_every=args.checkpoint_every, keep_all_checkpoints=False,
                      progress=not args.no_progress and lead, seed=args.seed, comm=comm,
                      precision=precision, loss_scaler=scaler)
    t0 = time.perf_counter()
    history = trainer.fit(resume_from=args.resume)
    seconds = time.perf_counter() - t0
    if not lead:
        return out

    model.save_pretrained(out)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "history.json"), "w") as f:
        json.dump(history, f)
    arch = "Llama" if getattr(args, "arch", "gpt2") == "llama" else "GPT"
    plot_loss(history, os.path.join(out, "loss.png"), title=f"{command}: char-level {arch} on {args.dataset}")
    prompt = np.array([tok.encode(sample_prompt)])
    n_new = args.block_size - prompt.shape[1]
    samples = []
    for seed in range(3):
        ids = model.generate(prompt, max_new_tokens=n_new, do_sample=True, temperature=0.8, top_k=40, seed=seed)
        samples.append(tok.decode(ids[0].tolist()))
    with open(os.path.join(out, "samples.txt"), "w", encoding="utf-8") as f:
        f.write("\n\n----------\n\n".join(samples) + "\n")
    final = [h for h in history if "eval_loss" in h]
    print(f"\ntrained {args.max_iters} steps in {seconds:.0f} s"
          + (f"; validation loss {final[-1]['eval_loss']:.3f}" if final else ""))
    if scaler is not None:
        skips = sum(e["event"] == "skip" for e in scaler.events)
        grows = sum(e["event"] == "grow" for e in scaler.events)
        print(f"fp16 loss scaling: {skips} overflow(s) skipped (scale halved), {grows} growth(s); "
              f"final scale {scaler.scale:g}; events in history.json (loss_scale_events)")
    print(f"wrote {out}/: config.json, model.safetensors, tokenizer.json, loss.png, samples.txt")
    print("\nA sample:\n" + samples[0])
    return out


def cmd_sample(args):
    from .io import read_config
    from .models import GPT, LlamaForCausalLM
    from .tokenizers import CharTokenizer
    classes = {"gpt2": GPT, "llama": LlamaForCausalLM}
    model_type = read_config(args.run, expected_model_types=tuple(classes))["model_type"]
    model = classes[model_type].from_pretrained(args.run)
    tok = CharTokenizer.load(os.path.join(args.run, "tokenizer.json"))
    prompt = np.array([tok.encode(args.prompt)])
    n_ctx = model.config.n_positions
    for i in range(args.num_samples):
        ids = model.generate(prompt, max_new_tokens=args.max_new_tokens, do_sample=not args.greedy,
                             temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                             seed=args.seed + i, use_cache=prompt.shape[1] + args.max_new_tokens <= n_ctx,
                             crop=True)
        print(tok.decode(ids[0].tolist()))
        print("----------")


def cmd_figures(args):
    """Run notebooks in their own folder with MINILM_WRITE_FIGURES=1, so that their
    minilm.viz.save_figure calls write notebooks/figures/*.png."""
    import glob
    from .course.run import execute_notebook
    from .viz import WRITE_FIGURES_ENV
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = args.notebooks or sorted(glob.glob(os.path.join(root, "notebooks", "*.ipynb")))
    os.environ[WRITE_FIGURES_ENV] = "1"
    for path in paths:
        t0 = time.perf_counter()
        execute_notebook(path, timeout=args.timeout)     # cwd: the notebook's folder
        print(f"{os.path.basename(path)}: figures written ({time.perf_counter() - t0:.0f} s)")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("MPLBACKEND", "Agg")          # files only: no display needed
    parser = argparse.ArgumentParser(prog="python -m minilm", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{demo,train,sample,bench,seq2seq,compress,trust,finetune,figures}")

    p = sub.add_parser("demo", help="train a small GPT on the bundled corpus (1-3 minutes on 2 cores)")
    _add_model_args(p, max_iters=1000, eval_every=200, eval_iters=10)
    p = sub.add_parser("train", help="train a char-level GPT (nanoGPT's 'baby' recipe by default) "
                                     "or Llama (--arch llama)")
    _add_model_args(p)
    p = sub.add_parser("sample", help="sample text from a run folder")
    p.add_argument("--run", required=True, help="a folder written by demo or train")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    sub.add_parser("bench", help="speed and memory benchmarks (see BENCHMARKS.md)", add_help=False)
    sub.add_parser("seq2seq", help="the encoder-decoder Transformer: translate | summarize", add_help=False)
    sub.add_parser("compress", help="distillation, quantisation, pruning, LoRA, cost estimates", add_help=False)
    sub.add_parser("finetune", help="BERT: pretrain | sentiment | ner | qa | embeddings", add_help=False)
    sub.add_parser("trust", help="trustworthy models: dp | fedavg | clip | seat | mlm-probe | explain",
                   add_help=False)
    p = sub.add_parser("figures", help="regenerate notebooks/figures by running the notebooks "
                                       "(the only command that writes them)")
    p.add_argument("notebooks", nargs="*", help="notebook files (default: every notebook)")
    p.add_argument("--timeout", type=int, default=600, help="per cell, in seconds")

    if argv[:1] == ["bench"]:
        from .bench.suite import main as bench_main
        return bench_main(argv[1:])
    if argv[:1] == ["finetune"]:
        from .applications.finetune import main as finetune_main
        return finetune_main(argv[1:])
    if argv[:1] == ["trust"]:
        from .applications.trust.cli import main as trust_main
        return trust_main(argv[1:])
    if argv[:1] == ["compress"]:
        from .applications.compress.cli import main as compress_main
        return compress_main(argv[1:])
    if argv[:1] == ["seq2seq"]:
        from .applications.seq2seq_tasks import main as seq2seq_main
        return seq2seq_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command in ("demo", "train"):
        train_run(args, args.command, sample_prompt="\n" if args.command == "train" else "The ")
    elif args.command == "sample":
        cmd_sample(args)
    elif args.command == "figures":
        return cmd_figures(args)
    else:
        parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
