"""Benchmarks: `python -m minilm bench {step,memory,kvcache,converge,dist,precision,arch,gpu,all}`
(see BENCHMARKS.md; `gpu` is minilm/bench/gpu.py).

    python -m minilm bench step --config baby --torch-python /path/to/venv/bin/python
    python -m minilm bench memory --config wide --torch-python ...
    python -m minilm bench kvcache
    python -m minilm bench precision --config baby
    python -m minilm bench converge --dataset tinyshakespeare
    OPENBLAS_NUM_THREADS=1 nice python -m minilm bench arch --iters 1000
    python -m minilm bench all --torch-python ... --data-file input.txt --json results.json

step      one training step (forward, loss, backward, clip 1.0, AdamW) in float32, as
          nanoGPT's CPU "baby" recipe or a wider model; median ms/step over many steps after
          warm-up, tokens/s, achieved GFLOP/s, and NumPy's own sgemm rate for comparison.
          Each round runs minilm in a fresh process; with --torch-python, nanoGPT's model in
          PyTorch eager (minilm/bench/torch_ref.py) follows in another fresh process on the same
          configuration, so the rounds interleave and both see the same machine conditions.
          --malloc retain runs both with glibc told to keep freed memory (see below).
memory    peak resident memory of building the model and taking a few steps, each framework
          in a fresh subprocess measured the same way (growth of ru_maxrss), and for minilm
          also the tracemalloc peak (NumPy reports its arrays to tracemalloc).
kvcache   greedy decoding speed at a 512-token context with and without the KV cache.
precision a training step in fp32 and in fp16 mixed precision (Trainer(precision=...)),
          each in a fresh process: the activation memory (bytes of the arrays the forward
          keeps for the backward, weights not counted), the tracemalloc peak of one step
          above what was allocated before it, and ms/step (on NumPy float16 is emulated
          with casts around float32 BLAS, so it is slower there: the memory is the point).
converge  the baby recipe for 2000 iterations on a char-level corpus with the Trainer, and
          the validation loss estimated like nanoGPT's estimate_loss; writes a loss curve.
arch      GPT-2 against Llama at equal parameter count and equal steps: `python -m minilm
          train` (--arch gpt2, then --arch llama with H, H/2 and 1 key/value heads) on the
          bundled corpus; validation loss, step time (interleaved rounds) and the KV cache's
          bytes per token (grouped-query attention's saving). Not in "all".

FLOPs are counted as nanoGPT's estimate_mfu does: per token 6 N + 12 L T C, where N is
the parameter count without the position table (the tied wte matrix is counted once: it
does a real matmul as the LM head), the 6 N is the forward (2 N) plus backward (4 N)
multiply-adds of every weight, and 12 L T C is the attention scores and weighted sum
(q k^T and P v, forward and backward, over the full T x T square).
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from ..backend import get_xp, to_numpy

# nanoGPT's CPU "baby" run (README: --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
# --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0, with the rest from
# config/train_shakespeare_char.py) and a wider model (that config's 6 x 384, block 256).
CONFIGS = {
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12),
    "wide": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=12),
}
RECIPE = dict(vocab_size=65, lr=1e-3, min_lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1,
              warmup=100, max_iters=2000, clip=1.0, dropout=0.0)
GPT2_SMALL = dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257)   # GPT-2 124M's shape
NANOGPT_BABY_VAL_LOSS = 1.88          # nanoGPT README, the CPU baby run after 2000 iterations


# ----------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------

def full_config(name, batch_size=None):
    cfg = dict(CONFIGS[name], **RECIPE)
    if batch_size:
        cfg["batch_size"] = batch_size
    cfg["name"] = name
    return cfg


def build_minilm(cfg, n_positions=None, seed=0):
    """GPT + AdamW (decay on matrices only) for cfg; returns (model, optimizer)."""
    from ..models import GPT, GPTConfig
    from ..training.optim import AdamW, param_groups_with_decay
    p = cfg["dropout"]
    config = GPTConfig(vocab_size=cfg["vocab_size"], n_positions=n_positions or cfg["block_size"],
                       n_embd=cfg["n_embd"], n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                       resid_pdrop=p, embd_pdrop=p, attn_pdrop=p, seed=seed)
    model = GPT(config, dtype="float32")
    opt = AdamW(param_groups_with_decay(model.named_parameters(), cfg["weight_decay"]),
                lr=cfg["lr"], betas=tuple(cfg["betas"]))
    return model, opt


def random_batch(cfg, seed=0):
    """(B, T) random token ids: the step's cost does not depend on their values."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, cfg["vocab_size"], (cfg["batch_size"], cfg["block_size"]))


def train_step(model, opt, params, ids, clip):
    """One training step: Trainer.train_step on (ids, labels=ids); returns the loss.

    params: what the optimiser holds (clipped together, as the Trainer clips its optimiser's)."""
    from ..training.trainer import Trainer
    trainer = Trainer(model, opt, None, max_steps=1, grad_clip=clip, progress=False,
                      step_fn=lambda batch: _lm_step(model, batch))
    return trainer.train_step(ids)[0]


def _lm_step(model, ids):
    out = model(ids, labels=ids)
    model.backward()
    return out


def flop_count(cfg):
    """(N, flops per token, flops per step) as nanoGPT's estimate_mfu counts them."""
    L, C, T, V = cfg["n_layer"], cfg["n_embd"], cfg["block_size"], cfg["vocab_size"]
    per_block = 12 * C * C + 13 * C          # c_attn, c_proj, c_fc, mlp c_proj (+ biases, 2 LayerNorms)
    N = L * per_block + V * C + 2 * C        # blocks, wte (also the LM head), ln_f; not wpe
    per_token = 6 * N + 12 * L * T * C
    return N, per_token, per_token * cfg["batch_size"] * T


def sgemm_rate(M, K, N, seconds=1.0):
    """NumPy float32 matmul (M, K) @ (K, N) in GFLOP/s: the median of repeated products."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    out = np.empty((M, N), dtype=np.float32)
    for _ in range(3):
        np.matmul(a, b, out=out)
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 5:
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    return 2.0 * M * K * N / statistics.median(times) / 1e9


def machine_info(torch_python=None):
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "cores": os.cpu_count(), "cpu": platform.processor() or platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:                       # older NumPy: no mode="dicts"
        info["blas"] = "unknown"
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        info[k] = os.environ.get(k)
    if torch_python:
        r = subprocess.run([torch_python, "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True)
        info["torch"] = r.stdout.strip() or f"unavailable: {r.stderr.strip()[-200:]}"
    return info


# glibc malloc returns freed memory to the OS (it trims the heap top, and unmaps every block
# above a size threshold), so each step's activations come back as fresh pages that the
# kernel must fault in and zero again: thousands of page faults per step. These two glibc
# tunables make the process keep freed memory for reuse instead. `--malloc retain` sets them
# for both frameworks' processes alike (they are read at process start).
RETAIN_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20),    # blocks up to 32 MiB from the heap
                       "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}     # trim the heap only past 1 GiB free


def child_env(malloc="default"):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    for k in RETAIN_FREED_MEMORY:
        env.pop(k, None)
    if malloc == "retain":
        env.update(RETAIN_FREED_MEMORY)
    return env


def run_minilm_child(func, kwargs, malloc="default"):
    """Call minilm.bench.<func>(**kwargs) in a fresh interpreter; returns its JSON line."""
    code = f"from minilm.bench import {func}; {func}(**{kwargs!r})"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=child_env(malloc))
    if r.returncode != 0:
        raise RuntimeError(f"minilm benchmark child failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _torch_script():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_ref.py")


def run_torch(torch_python, what, cfg, malloc="default", **kw):
    """Run minilm/bench/torch_ref.py under torch_python; returns its JSON result."""
    keys = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "batch_size", "lr",
            "min_lr", "warmup", "betas", "weight_decay", "clip")
    keys += tuple(k for k in ("bias", "gelu") if k in cfg)          # converge: nanoGPT's own model
    cmd = [torch_python, _torch_script(), what, "--config", json.dumps({k: cfg[k] for k in keys})]
    for k, v in kw.items():
        cmd += [f"--{k}", str(v)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(malloc))
    if r.returncode != 0:
        raise RuntimeError(f"torch_ref.py failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _table(rows, header):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).rjust(w) if i else str(x).ljust(w)
                               for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


# ----------------------------------------------------------------------------------------
# step
# ----------------------------------------------------------------------------------------

def _step_child(config, steps, warmup, batch_size=None):
    """Runs in a fresh interpreter: time `steps` training steps after `warmup` ones."""
    cfg = full_config(config, batch_size)
    model, opt = build_minilm(cfg)
    params = model.parameters()
    ids = random_batch(cfg)
    for _ in range(warmup):
        train_step(model, opt, params, ids, cfg["clip"])
    times, cpu_times = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = train_step(model, opt, params, ids, cfg["clip"])
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    print(json.dumps({"framework": "minilm", "times_s": times, "cpu_times_s": cpu_times,
                      "median_s": statistics.median(times), "loss": loss}))


def bench_step(config="baby", steps=None, warmup=None, rounds=3, batch_size=None,
               torch_python=None, malloc="default", verbose=True):
    """Seconds per training step for minilm (and torch): `rounds` rounds, each a fresh
    minilm process then a fresh torch process, so both see the same machine conditions."""
    cfg = full_config(config, batch_size)
    steps = steps or (20 if config == "baby" else 4)
    warmup = warmup if warmup is not None else (5 if config == "baby" else 2)
    N, per_token, per_step = flop_count(cfg)
    B, T, C = cfg["batch_size"], cfg["block_size"], cfg["n_embd"]
    say = print if verbose else (lambda *a, **k: None)
    say(f"[step] {config}: L={cfg['n_layer']} H={cfg['n_head']} C={C} T={T} B={B} V={cfg['vocab_size']}, "
        f"float32, malloc {malloc}; {rounds} rounds x {steps} steps (+{warmup} warm-up) per framework")
    # NumPy's own rate on the model's largest matmul, (B*T, C) @ (C, 4C), and a big square one
    gemm = sgemm_rate(B * T, C, 4 * C)
    gemm_big = sgemm_rate(2048, 2048, 2048)
    say(f"  numpy sgemm: {gemm:.1f} GFLOP/s on ({B * T}x{C}) @ ({C}x{4 * C}); "
        f"{gemm_big:.1f} GFLOP/s on 2048^3")

    runs = {"minilm": [], "torch": []}
    rounds_out = []
    for r in range(rounds):
        mine = run_minilm_child("_step_child", dict(config=config, steps=steps, warmup=warmup,
                                                    batch_size=batch_size), malloc)
        runs["minilm"].append(mine)
        entry = {"minilm_median_s": mine["median_s"]}
        if torch_python:
            theirs = run_torch(torch_python, "step", cfg, malloc, warmup=warmup, steps=steps)
            runs["torch"].append(theirs)
            entry.update(torch_median_s=theirs["median_s"], ratio=mine["median_s"] / theirs["median_s"])
        rounds_out.append(entry)
        say(f"  round {r + 1}: minilm {1e3 * entry['minilm_median_s']:.1f} ms"
            + (f", torch {1e3 * entry['torch_median_s']:.1f} ms, ratio {entry['ratio']:.2f}"
               if torch_python else ""))

    def summary(results):
        times = [t for res in results for t in res["times_s"]]
        cpu = [t for res in results for t in res["cpu_times_s"]]
        med = statistics.median(times)
        return {"median_ms": 1e3 * med, "min_ms": 1e3 * min(times),
                "cpu_median_ms": 1e3 * statistics.median(cpu), "tokens_per_s": B * T / med,
                "gflops": per_step / med / 1e9, "fraction_of_sgemm": per_step / med / 1e9 / gemm}

    result = {"config": cfg, "malloc": malloc, "n_params_counted": N, "flops_per_token": per_token,
              "flops_per_step": per_step, "numpy_sgemm_gflops": gemm,
              "numpy_sgemm_2048_gflops": gemm_big, "rounds": rounds_out,
              "minilm": summary(runs["minilm"])}
    rows = [["minilm (NumPy)"] + _fmt_step(result["minilm"])]
    if torch_python:
        result["torch"] = summary(runs["torch"])
        result["ratio_minilm_over_torch"] = result["minilm"]["median_ms"] / result["torch"]["median_ms"]
        result["ratio_of_mins"] = result["minilm"]["min_ms"] / result["torch"]["min_ms"]
        result["median_round_ratio"] = statistics.median(e["ratio"] for e in rounds_out)
        rows.append(["PyTorch eager"] + _fmt_step(result["torch"]))
    say(_table(rows, ["", "ms/step (median)", "min", "CPU ms/step", "tokens/s", "GFLOP/s",
                      "of sgemm"]))
    say(f"  FLOPs/step = (6 N + 12 L T C) x B T = (6 x {N:,} + 12 x {cfg['n_layer']} x {T} x {C})"
        f" x {B * T} = {per_step / 1e9:.2f} GFLOP")
    if torch_python:
        ratio = result["ratio_minilm_over_torch"]
        say(f"  minilm / torch time ratio: {ratio:.2f} ({'minilm' if ratio < 1 else 'torch'} faster) "
            f"from the medians of all steps; {result['median_round_ratio']:.2f} as the median of "
            f"the rounds' ratios, {result['ratio_of_mins']:.2f} from the fastest steps")
    return result


def _fmt_step(s):
    return [f"{s['median_ms']:.1f}", f"{s['min_ms']:.1f}", f"{s['cpu_median_ms']:.1f}",
            f"{s['tokens_per_s']:,.0f}", f"{s['gflops']:.1f}", f"{100 * s['fraction_of_sgemm']:.0f}%"]


# ----------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------

def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # KiB on Linux


def _memory_child(config, steps, batch_size=None, use_tracemalloc=False):
    """Runs in a fresh interpreter: the memory a model build plus `steps` steps adds."""
    cfg = full_config(config, batch_size)
    import minilm.models  # noqa: F401  (imports done before the baseline is read)
    import minilm.training.optim  # noqa: F401
    a = np.ones((64, 64), dtype=np.float32)
    a @ a                 # start the BLAS library (threads, buffers) first, as torch's child does
    if use_tracemalloc:
        import tracemalloc
        tracemalloc.start()
    rss0 = _peak_rss_mb()
    model, opt = build_minilm(cfg)
    params = model.parameters()
    ids = random_batch(cfg)
    for _ in range(steps):
        train_step(model, opt, params, ids, cfg["clip"])
    out = {"framework": "minilm", "baseline_rss_mb": rss0, "peak_rss_mb": _peak_rss_mb(),
           "n_params": model.num_parameters()}
    out["peak_rss_growth_mb"] = out["peak_rss_mb"] - rss0
    if use_tracemalloc:
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    print(json.dumps(out))


def bench_memory(config="baby", steps=3, batch_size=None, torch_python=None, malloc="default",
                 verbose=True):
    cfg = full_config(config, batch_size)
    say = print if verbose else (lambda *a, **k: None)
    say(f"[memory] {config}: peak RSS growth over model build + {steps} training steps, "
        f"each framework in a fresh process (malloc {malloc})")
    kw = dict(config=config, steps=steps, batch_size=batch_size)
    mine = run_minilm_child("_memory_child", kw, malloc)
    traced = run_minilm_child("_memory_child", dict(kw, use_tracemalloc=True), malloc)
    mine["tracemalloc_peak_mb"] = traced["tracemalloc_peak_mb"]
    n = mine["n_params"]
    # parameters, gradients and AdamW's two moments: 4 float32 copies of every weight
    result = {"config": cfg, "malloc": malloc, "minilm": mine, "state_mb": 4 * 4 * n / 2**20}
    rows = [["minilm (NumPy)", f"{mine['peak_rss_growth_mb']:.1f}", f"{mine['baseline_rss_mb']:.0f}",
             f"{mine['tracemalloc_peak_mb']:.1f}"]]
    if torch_python:
        theirs = run_torch(torch_python, "memory", cfg, malloc, steps=steps)
        result["torch"] = theirs
        result["ratio_minilm_over_torch"] = mine["peak_rss_growth_mb"] / theirs["peak_rss_growth_mb"]
        rows.append(["PyTorch eager", f"{theirs['peak_rss_growth_mb']:.1f}",
                     f"{theirs['baseline_rss_mb']:.0f}", "-"])
    say(_table(rows, ["", "peak RSS growth MB", "RSS before MB", "tracemalloc peak MB"]))
    say(f"  {n:,} parameters: weights + grads + AdamW moments = {result['state_mb']:.1f} MB")
    if torch_python:
        say(f"  minilm / torch peak-growth ratio: {result['ratio_minilm_over_torch']:.2f}")
    return result


# ----------------------------------------------------------------------------------------
# precision
# ----------------------------------------------------------------------------------------

def activation_bytes(model):
    """{dtype name: bytes} of the arrays the last forward left for the backward (every
    module's `cache` and the model's loss and head caches), each buffer counted once (views
    count as their base array) and the weights (shared into caches by reference) left out."""
    seen, sizes = set(), {}

    def root(a):
        while getattr(a, "base", None) is not None and hasattr(a.base, "nbytes"):
            a = a.base
        return a

    def walk(obj):
        if isinstance(obj, (tuple, list)):
            for item in obj:
                walk(item)
        elif hasattr(obj, "nbytes") and hasattr(obj, "dtype"):
            r = root(obj)
            if id(r) not in seen:
                seen.add(id(r))
                sizes[str(r.dtype)] = sizes.get(str(r.dtype), 0) + int(r.nbytes)

    for p in model.parameters():                        # weights are not activations
        seen.add(id(root(p.data)))
    for m in model.modules():
        walk(m.cache)
    walk(getattr(model, "_loss_cache", None))
    walk(getattr(model, "_head_cache", None))
    return sizes


def _precision_child(config, precision, steps, batch_size=None):
    """Runs in a fresh interpreter: activation bytes, tracemalloc peak and time of a step."""
    import tracemalloc
    from ..training.trainer import Trainer
    cfg = full_config(config, batch_size)
    model, opt = build_minilm(cfg)
    ids = random_batch(cfg)
    batch = {"input_ids": ids, "labels": ids}
    trainer = Trainer(model, opt, [batch], max_steps=steps, grad_clip=cfg["clip"], progress=False,
                      precision=precision)
    for _ in range(2):                                  # warm-up (allocator, fp16 buffers)
        trainer.train_step(batch)
    # the caches of one forward, in the step's own dtypes
    if trainer.mixed is not None:
        trainer.mixed.half()
    model(**batch)
    held = activation_bytes(model)
    model.clear_caches()
    if trainer.mixed is not None:
        trainer.mixed.master(None)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    trainer.train_step(batch)
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step(batch)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"precision": precision, "activation_bytes": held,
                      "activation_mb": sum(held.values()) / 2**20,
                      "step_peak_mb": peak / 2**20, "median_ms": 1e3 * statistics.median(times),
                      "loss_scale": trainer.loss_scaler.scale if trainer.loss_scaler else None}))


def bench_precision(config="baby", steps=5, batch_size=None, verbose=True):
    """fp32 against fp16 mixed precision: activation memory and the peak of one step."""
    say = print if verbose else (lambda *a, **k: None)
    cfg = full_config(config, batch_size)
    say(f"[precision] {config} (B={cfg['batch_size']}, T={cfg['block_size']}): one training "
        "step, fp32 and fp16 mixed precision, each in a fresh process")
    runs = {p: run_minilm_child("_precision_child", dict(config=config, precision=p, steps=steps,
                                                         batch_size=batch_size))
            for p in ("fp32", "fp16")}
    rows = [[p, f"{r['activation_mb']:.2f}",
             ", ".join(f"{k} {v / 2**20:.2f}" for k, v in sorted(r["activation_bytes"].items())),
             f"{r['step_peak_mb']:.2f}", f"{r['median_ms']:.0f}"] for p, r in runs.items()]
    say(_table(rows, ["", "activations MB", "by dtype MB", "step peak MB (tracemalloc)", "ms/step"]))
    ratio = runs["fp16"]["activation_mb"] / runs["fp32"]["activation_mb"]
    say(f"  fp16 / fp32 activation memory: {ratio:.2f}; step peak: "
        f"{runs['fp16']['step_peak_mb'] / runs['fp32']['step_peak_mb']:.2f}")
    return {"config": cfg, "runs": runs, "activation_ratio": ratio}


# ----------------------------------------------------------------------------------------
# kvcache
# ----------------------------------------------------------------------------------------

def bench_kvcache(context=512, new_tokens=32, n_positions=1024, verbose=True, width="baby"):
    """Greedy decoding after a `context`-token prompt, with and without the KV cache.

    width: "baby" (L=4, C=128, the char-level vocabulary of 65) or "gpt2" (GPT-2 small's
    shape: L=12, H=12, C=768, vocabulary 50257; random weights, the timing is the point).

    Decode speed is timed token by token: with the cache, one `forward_cached` call on the
    newest token (the prompt's prefill is timed apart); without it, a full forward over the
    whole sequence so far, as `generate(use_cache=False)` does. `generate` itself is also
    timed end to end both ways, and must give the same tokens.
    """
    from ..models import GPT, GPTConfig
    say = print if verbose else (lambda *a, **k: None)
    shapes = {"baby": dict(CONFIGS["baby"], vocab_size=RECIPE["vocab_size"]),
              "gpt2": GPT2_SMALL}
    if width not in shapes:
        raise ValueError(f"bench_kvcache: width must be one of {sorted(shapes)}, got {width!r}")
    b = shapes[width]
    cfg = GPTConfig(vocab_size=b["vocab_size"], n_positions=n_positions, n_embd=b["n_embd"],
                    n_layer=b["n_layer"], n_head=b["n_head"], resid_pdrop=0.0, embd_pdrop=0.0,
                    attn_pdrop=0.0, seed=0)
    model = GPT(cfg).eval()
    prompt = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, context))
    say(f"[kvcache] {width}-width GPT (L={cfg.n_layer}, C={cfg.n_embd}, V={cfg.vocab_size}, "
        f"n_positions={n_positions}), "
        f"prompt {context} tokens, {new_tokens} new tokens, greedy, batch 1")
    model.generate(prompt[:, :min(64, context)], 4)              # warm-up

    # with the cache: prefill once, then one position per token
    cache = model.init_kv_cache(1, context + new_tokens)
    t0 = time.perf_counter()
    logits = model.forward_cached(prompt, cache, 0)            # (1, V)
    prefill = time.perf_counter() - t0
    xp = get_xp(logits)                                          # logits live on the backend
    seq, cached_times = [int(xp.argmax(logits[0]))], []
    for i in range(new_tokens - 1):
        t0 = time.perf_counter()
        logits = model.forward_cached(np.array([[seq[-1]]]), cache, context + i)
        cached_times.append(time.perf_counter() - t0)
        seq.append(int(xp.argmax(logits[0])))
    # without: the whole sequence again for every token
    ids, plain_times = prompt, []
    for _ in range(new_tokens):
        t0 = time.perf_counter()
        logits = model.forward(ids).logits[:, -1]                 # (1, V)
        model.clear_caches()
        plain_times.append(time.perf_counter() - t0)
        ids = np.concatenate([ids, to_numpy(xp.argmax(logits, axis=-1))[:, None]], axis=1)
    same = seq == ids[0, context:].tolist()
    # end to end, through generate()
    t0 = time.perf_counter()
    with_cache = model.generate(prompt, new_tokens, use_cache=True)
    t_cached = time.perf_counter() - t0
    t0 = time.perf_counter()
    without = model.generate(prompt, new_tokens, use_cache=False)
    t_plain = time.perf_counter() - t0
    same = same and bool((with_cache == without).all())

    per_cached, per_plain = statistics.median(cached_times), statistics.median(plain_times)
    result = {"width": width, "context": context, "new_tokens": new_tokens, "prefill_s": prefill,
              "cached_ms_per_token": 1e3 * per_cached, "uncached_ms_per_token": 1e3 * per_plain,
              "cached_decode_tokens_per_s": 1 / per_cached, "uncached_tokens_per_s": 1 / per_plain,
              "speedup_decode": per_plain / per_cached,
              "generate_cached_s": t_cached, "generate_uncached_s": t_plain,
              "speedup_end_to_end": t_plain / t_cached, "identical_tokens": same}
    rows = [["with KV cache", f"{1 / per_cached:,.0f}", f"{1e3 * per_cached:.2f}", f"{t_cached:.2f}"],
            ["recompute prefix", f"{1 / per_plain:,.1f}", f"{1e3 * per_plain:.2f}", f"{t_plain:.2f}"]]
    say(_table(rows, ["", "decode tokens/s", "ms/token (median)",
                      f"generate() s, {new_tokens} tokens incl. prefill"]))
    say(f"  prefill of {context} tokens: {1e3 * prefill:.1f} ms; decode speed-up at a "
        f"{context}-token context: {result['speedup_decode']:.0f}x "
        f"({result['speedup_end_to_end']:.1f}x for generate() end to end, prefill included); "
        f"same tokens: {same}")
    return result


# ----------------------------------------------------------------------------------------
# converge
# ----------------------------------------------------------------------------------------

TORCH_MODELS = {"gpt2": {"bias": True, "gelu": "tanh"},     # minilm's architecture (GPT-2)
                "nanogpt": {"bias": False, "gelu": "none"}}  # nanoGPT's train.py defaults


def bench_converge(data_file=None, dataset=None, iters=None, eval_every=250, eval_iters=200,
                   plot=None, seed=1337, progress=True, torch_python=None, verbose=True,
                   torch_model="gpt2"):
    """nanoGPT's baby recipe on a char-level corpus; returns the final validation loss.

    nanoGPT trains on (x, y) pairs of block_size tokens with y = x shifted by one, so every
    position t predicts token t + 1: 64 predictions per window. minilm's GPT follows Hugging
    Face (labels are shifted inside the model), so we feed windows of block_size + 1 = 65
    tokens: the same 64 predictions over the same contexts. The model then has a 65-row
    position table whose last row never gets a gradient (the last position has no target,
    and no earlier position attends to it); all else is nanoGPT's 4 x 128 model.
    """
    from ..data import LMData, load_text
    from ..data.corpus import cache_dir
    from ..training.optim import cosine_with_warmup
    from ..tokenizers import CharTokenizer
    from ..training.trainer import Trainer
    say = print if verbose else (lambda *a, **k: None)
    if dataset == "tinyshakespeare" or data_file is None:
        text = load_text("tinyshakespeare", data_file)
    else:
        text = load_text("file", data_file)
    cfg = full_config("baby")
    iters = iters or cfg["max_iters"]
    tok = CharTokenizer.from_text(text)
    cfg["vocab_size"] = tok.vocab_size
    T = cfg["block_size"]
    data = LMData(tok.encode(text), T + 1, cfg["batch_size"])            # 90 / 10 split
    model, opt = build_minilm(cfg, n_positions=T + 1, seed=seed)
    cfg["warmup"] = min(cfg["warmup"], iters)              # a short trial run still gets a schedule
    schedule = lambda step: cosine_with_warmup(step, cfg["lr"], cfg["min_lr"], cfg["warmup"], iters)
    say(f"[converge] {len(text):,} characters, vocabulary {tok.vocab_size}, "
        f"{model.num_parameters():,} parameters; {iters} iterations, "
        f"val loss = mean of {eval_iters} batches every {eval_every}")
    trainer = Trainer(model, opt, data.train_batch, data.val_batch, max_steps=iters,
                      lr_schedule=schedule, grad_clip=cfg["clip"], eval_every=eval_every,
                      eval_steps=eval_iters, log_every=10, progress=progress, seed=seed)
    t0 = time.perf_counter()
    history = trainer.fit()
    wall = time.perf_counter() - t0
    evals = [h for h in history if "eval_loss" in h]
    final = evals[-1]["eval_loss"]
    # how noisy is a validation estimate? the spread of single-batch losses over fresh batches
    rng = np.random.default_rng([seed, 2])
    per_batch = np.array([trainer.evaluate([data.val_batch(rng)]) for _ in range(eval_iters)])
    spread = float(per_batch.std(ddof=1))
    # training time alone: each history record covers the steps since the previous one
    tokens_per_step, train_s, prev = cfg["batch_size"] * (T + 1), 0.0, 0
    for h in history:
        if h.get("tokens_per_s"):
            train_s += (h["step"] - prev) * tokens_per_step / h["tokens_per_s"]
        prev = h["step"]
    result = {"iters": iters, "val_loss": final, "wall_s": wall, "train_s": train_s,
              "val_curve": [(h["step"], h["eval_loss"]) for h in evals],
              "nanogpt_reported": NANOGPT_BABY_VAL_LOSS, "vocab_size": tok.vocab_size,
              "target_met": final <= NANOGPT_BABY_VAL_LOSS, "seed": seed,
              "val_batch_loss_std": spread,
              "sd_of_20_batch_mean": spread / 20 ** 0.5,
              "sd_of_200_batch_mean": spread / 200 ** 0.5}
    say(f"  val loss after {iters} iterations: {final:.4f} (nanoGPT reports "
        f"{NANOGPT_BABY_VAL_LOSS}); wall time {wall:.0f} s, of which training {train_s:.0f} s "
        f"and evaluation the rest")
    say(f"  one validation batch's loss varies with SD {spread:.3f}: a mean of 20 batches (nanoGPT's "
        f"--eval_iters=20) has SD {spread / 20 ** 0.5:.4f}, of 200 batches {spread / 200 ** 0.5:.4f}")
    if torch_python:
        # the same recipe in PyTorch (nanoGPT's own loop), as a control for the 1.88 figure
        path = data_file or os.path.join(cache_dir(), "tinyshakespeare.txt")
        theirs = run_torch(torch_python, "converge", dict(cfg, **TORCH_MODELS[torch_model]), **{
            "data-file": path, "iters": iters, "eval-every": eval_every,
            "eval-iters": eval_iters, "seed": seed})
        result["torch"] = theirs
        theirs["model"] = torch_model
        say(f"  PyTorch ({torch_model} model), same recipe: val loss {theirs['val_loss']:.4f} "
            f"in {theirs['wall_s']:.0f} s")
    if plot:
        from ..viz import plot_loss
        os.makedirs(os.path.dirname(os.path.abspath(plot)), exist_ok=True)
        ax = plot_loss(history, title=f"baby recipe, {iters} iterations: val loss {final:.3f}")
        if torch_python:
            ax.plot(*zip(*result["torch"]["val_curve"]), "s--", ms=3, label="validation, PyTorch")
        ax.axhline(NANOGPT_BABY_VAL_LOSS, color="gray", lw=0.8, ls=":", label="nanoGPT's 1.88")
        ax.legend()
        ax.figure.tight_layout()
        ax.figure.savefig(plot)
        import matplotlib.pyplot as plt
        plt.close(ax.figure)
        result["plot"] = plot
        say(f"  loss curve: {plot}")
    return result


def summarise_seeds(runs, verbose=True):
    """Mean and SD of the final validation loss over runs that differ only in their seed."""
    def stats(values):
        values = np.asarray(values, dtype=float)
        sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        return {"mean": float(values.mean()), "sd": sd, "min": float(values.min()),
                "max": float(values.max()), "values": values.tolist()}
    out = {"seeds": [r["seed"] for r in runs], "runs": runs,
           "minilm": stats([r["val_loss"] for r in runs])}
    rows = [[str(r["seed"]), f"{r['val_loss']:.4f}"] for r in runs]
    header = ["seed", "minilm val loss"]
    if all("torch" in r for r in runs):
        out["torch"] = stats([r["torch"]["val_loss"] for r in runs])
        out["torch_model"] = runs[0]["torch"]["model"]
        header.append(f"PyTorch ({out['torch_model']})")
        for row, r in zip(rows, runs):
            row.append(f"{r['torch']['val_loss']:.4f}")
    if verbose:
        print(_table(rows, header))
        for name in ("minilm", "torch"):
            if name in out:
                s = out[name]
                print(f"  {name}: mean {s['mean']:.4f}, SD {s['sd']:.4f} over {len(runs)} seeds "
                      f"(range {s['min']:.4f} to {s['max']:.4f}); nanoGPT reports "
                      f"{NANOGPT_BABY_VAL_LOSS} from one run")
    return out


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------

# ----------------------------------------------------------------------------------------
# dist: data parallel over MPI, measured here and projected with a ring all-reduce model
# ----------------------------------------------------------------------------------------

# Stated interconnects for the projection: (name, bytes/s per GPU link, latency per message)
LINKS = [("NVLink 4 (450 GB/s)", 450e9, 3e-6), ("InfiniBand NDR (50 GB/s)", 50e9, 5e-6),
         ("100 Gb Ethernet (12.5 GB/s)", 12.5e9, 20e-6)]
PROJECTED = {"GPT-2 small": 124_439_808, "BERT-base": 109_482_240}   # parameters (fp32 grads)


def ring_allreduce_seconds(nbytes, n, bandwidth, latency):
    """Ring all-reduce: 2(N-1) messages, each rank sends 2(N-1)/N of the buffer.

        t = 2 (N - 1) latency + 2 (N - 1) / N * bytes / bandwidth
    """
    if n <= 1:
        return 0.0
    return 2 * (n - 1) * latency + 2 * (n - 1) / n * nbytes / bandwidth


def _dist_child(out_json, config="baby", steps=8, warmup=2, zero=False, overlap=False):
    """Under mpiexec: time data-parallel steps and an all-reduce sweep; rank 0 writes JSON."""
    from ..training.dist import DataParallel, allreduce_buckets, get_comm
    from ..training.optim import ZeroAdamW
    from ..training.trainer import Trainer
    comm = get_comm(timeout=120)
    cfg = full_config(config)
    model, opt = build_minilm(cfg)
    if zero:
        opt = ZeroAdamW(opt.param_groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), comm=comm)
    dp = DataParallel(model, comm, reduce=not zero, overlap=overlap,
                      bucket_bytes=(512 << 10) if overlap else (4 << 20))
    get = lambda rng: (lambda ids: {"input_ids": ids, "labels": ids})(
        rng.integers(0, cfg["vocab_size"], (cfg["batch_size"], cfg["block_size"])))
    trainer = Trainer(dp, opt, get, max_steps=warmup + steps, grad_clip=1.0, progress=False,
                      comm=comm, log_every=10 ** 9)
    trainer.max_steps = warmup
    trainer.fit()
    comm.barrier()
    c0, w0, t0 = getattr(comm, "comm_seconds", 0.0), dp.comm_seconds, time.perf_counter()
    trainer.max_steps = warmup + steps
    trainer.fit()
    comm.barrier()
    seconds = time.perf_counter() - t0
    result = {"world_size": comm.world_size, "zero": zero, "overlap": overlap, "config": config,
              "grad_wait_s": (dp.comm_seconds - w0) / steps,
              "step_s": seconds / steps, "comm_s": (getattr(comm, "comm_seconds", 0.0) - c0) / steps,
              "tokens_per_s": steps * cfg["batch_size"] * cfg["block_size"] / seconds,
              "n_params": int(sum(p.data.size for p in dp.params))}
    sweep = []
    if comm.world_size > 1:
        for nbytes in [2 ** k for k in range(8, 26, 2)]:           # 256 B .. 16 MiB
            buf = np.ones(nbytes // 4, dtype=np.float32)
            reps = max(3, min(50, (1 << 24) // nbytes))
            comm.allreduce(buf)
            comm.barrier()
            t = time.perf_counter()
            for _ in range(reps):
                comm.allreduce(buf)
            sweep.append((nbytes, (time.perf_counter() - t) / reps))
        grads = np.ones(result["n_params"], dtype=np.float32)       # this model's gradients
        timings = {}
        for name, bucket in (("one buffer", 1 << 30), ("4 MiB buckets", 4 << 20),
                             ("256 KiB buckets", 256 << 10)):
            comm.barrier()
            t = time.perf_counter()
            for _ in range(10):
                allreduce_buckets(comm, grads, bucket)
            timings[name] = (time.perf_counter() - t) / 10
        result["bucket_s"] = timings
    result["sweep"] = sweep
    if comm.rank == 0:
        with open(out_json, "w") as f:
            json.dump(result, f)


def bench_dist(world_sizes=(1, 2), config="baby", steps=8,
               plot="chapters/figures/results/dist_projection.png", verbose=True):
    """tokens/s under 1 and N processes (mpiexec), the time in the gradient all-reduce, a
    latency + bandwidth fit of the measured all-reduce, and projected steps of GPT-2 small
    and BERT-base on 8..512 GPUs at the LINKS bandwidths (plot)."""
    import shutil
    import subprocess
    import tempfile
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    mpiexec = mpiexec if os.path.exists(mpiexec) else shutil.which("mpiexec")
    if mpiexec is None:
        raise RuntimeError("bench dist needs mpiexec and mpi4py: pip install mpich mpi4py")
    runs = []
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        for n in world_sizes:
            for zero, overlap in ([(False, False), (True, False), (False, True)] if n > 1
                                  else [(False, False)]):
                out = os.path.join(tmp, f"{n}_{zero}_{overlap}.json")
                code = (f"from minilm.bench import _dist_child; "
                        f"_dist_child({out!r}, {config!r}, {steps}, zero={zero}, overlap={overlap})")
                cmd = [sys.executable, "-c", code]
                if n > 1:
                    cmd = [mpiexec, "-n", str(n)] + cmd
                subprocess.run(cmd, check=True, timeout=900, env=env)
                with open(out) as f:
                    runs.append(json.load(f))
    kind = lambda r: ("ZeRO-1" if r["zero"] else
                      "all-reduce, overlapped (512 KiB)" if r["overlap"] else "all-reduce (4 MiB)")
    rows = [[r["world_size"], kind(r), f"{r['tokens_per_s']:,.0f}", f"{r['step_s'] * 1e3:.1f}",
             f"{r['comm_s'] * 1e3:.2f}", f"{r['grad_wait_s'] * 1e3:.2f}"] for r in runs]
    fit = None
    sweep = next((r["sweep"] for r in runs if r["sweep"]), [])
    if sweep:
        n = next(r["world_size"] for r in runs if r["sweep"])
        x = np.array([b for b, _ in sweep], dtype=float)
        y = np.array([t for _, t in sweep])
        slope, intercept = np.polyfit(x, y, 1, w=1 / y)         # t = a + b * bytes, relative error
        fit = {"world_size": n, "latency_s": max(intercept, 0.0) / (2 * (n - 1)),
               "bandwidth_Bps": 2 * (n - 1) / n / slope, "sweep": sweep}
    links = list(LINKS) + ([("measured here (MPI, shared memory)", fit["bandwidth_Bps"],
                             fit["latency_s"])] if fit else [])
    gpus = [8, 16, 32, 64, 128, 256, 512]
    projection = {m: {name: [ring_allreduce_seconds(4 * P, g, bw, lat) for g in gpus]
                      for name, bw, lat in links} for m, P in PROJECTED.items()}
    if verbose:
        print(_table(rows, ["processes", "gradients", "tokens/s", "step ms", "in collectives ms",
                            "gradient wait after backward ms"]))
        if fit:
            print(f"\nring all-reduce fit ({fit['world_size']} processes): latency "
                  f"{fit['latency_s'] * 1e6:.1f} us per message, bandwidth "
                  f"{fit['bandwidth_Bps'] / 1e9:.2f} GB/s")
            for r in runs:
                if "bucket_s" in r:
                    print("  the model's gradients, " + ", ".join(
                        f"{k}: {v * 1e3:.2f} ms" for k, v in r["bucket_s"].items()))
        for m in PROJECTED:
            print(f"\n{m}: fp32 gradient all-reduce per step (ms), ring model")
            print(_table([[name] + [f"{t * 1e3:.1f}" for t in ts] for name, ts in projection[m].items()],
                         ["link"] + [str(g) for g in gpus]))
    if plot:
        from ..viz import pyplot
        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for ax, m in zip(axes, PROJECTED):
            for name, ts in projection[m].items():
                ax.plot(gpus, [t * 1e3 for t in ts], marker="o", label=name)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("GPUs (data parallel)")
            ax.set_title(f"{m}: {PROJECTED[m] / 1e6:.0f}M fp32 gradients")
        axes[0].set_ylabel("ring all-reduce per step (ms)")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(plot)), exist_ok=True)
        fig.savefig(plot, dpi=120)
        plt.close(fig)
        if verbose:
            print(f"\nwrote {plot}")
    return {"runs": runs, "fit": fit, "gpus": gpus, "projection": projection}


# ----------------------------------------------------------------------------------------
# arch: GPT-2 against Llama at equal size
# ----------------------------------------------------------------------------------------

def arch_variants(n_head):
    """[(label, extra `train` flags)]: GPT-2, then Llama with H, H/2 (when H is even) and 1
    key/value heads."""
    kv = [(n_head, "H (MHA)")] + ([(n_head // 2, "H/2 (GQA)")] if n_head % 2 == 0 and n_head > 2 else []) \
        + ([(1, "1 (MQA)")] if n_head > 1 else [])
    return [("GPT-2", [])] + [(f"Llama, H_kv = {name}", ["--arch", "llama", "--n-kv-head", str(h)])
                              for h, name in kv]


def bench_arch(config="baby", iters=1000, eval_iters=100, seed=1337, data_file=None, rounds=5, steps=10,
               out=None, archs=None, progress=True, verbose=True):
    """GPT-2 and Llama trained the same way (the `train` command: same data, batches, seed,
    AdamW, schedule and steps) at the same width, depth and heads, Llama's SwiGLU width
    chosen for GPT-2's parameter count. Reports per model: parameters, validation loss after
    `iters` steps (mean of `eval_iters` fixed validation batches), step time (median over
    `rounds` interleaved rounds of `steps` timed steps, each model in turn, so all see the
    same machine load), and the KV cache's bytes per token (measured on `init_kv_cache`,
    checked against minilm.costs.kv_cache_memory).

    config: a CONFIGS name or a dict with n_layer, n_head, n_embd, block_size, batch_size.
    archs: [(label, extra `train` flags)], default arch_variants(n_head).
    """
    import tempfile
    from ..__main__ import _add_model_args, build_model, train_run
    from ..data import LMData, load_text
    from ..evaluation.costs import kv_cache_memory
    from ..tokenizers import CharTokenizer
    from ..training.optim import AdamW, param_groups_with_decay
    say = print if verbose else (lambda *a, **k: None)
    out = out or tempfile.mkdtemp(prefix="minilm_bench_arch_")
    b = CONFIGS[config] if isinstance(config, str) else config
    archs = archs or arch_variants(b["n_head"])
    common = ["--n-layer", str(b["n_layer"]), "--n-head", str(b["n_head"]), "--n-embd", str(b["n_embd"]),
              "--block-size", str(b["block_size"]), "--batch-size", str(b["batch_size"]),
              "--max-iters", str(iters), "--eval-every", str(max(1, iters // 2)),
              "--eval-iters", str(eval_iters), "--seed", str(seed)]
    if data_file:
        common += ["--data-file", data_file]
    parser = argparse.ArgumentParser()
    _add_model_args(parser)                          # the train command's flags and defaults
    results = []
    for i, (label, flags) in enumerate(archs):
        args = parser.parse_args(common + flags + ["--out", os.path.join(out, f"arch{i}")]
                                 + ([] if progress else ["--no-progress"]))
        say(f"[arch] {label}: python -m minilm train {' '.join(common + flags)}")
        t0 = time.perf_counter()
        folder = train_run(args, "train")
        wall = time.perf_counter() - t0
        with open(os.path.join(folder, "history.json")) as f:
            evals = [h for h in json.load(f) if "eval_loss" in h]
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        results.append({"label": label, "command": "python -m minilm train " + " ".join(common + flags),
                        "config": cfg, "wall_s": wall, "val_loss": evals[-1]["eval_loss"],
                        "val_curve": [(h["step"], h["eval_loss"]) for h in evals], "_args": args})
    # step time: fresh models, one fixed batch of the corpus, the models in turn in every round
    text = load_text("file" if data_file else "pydoc", data_file)
    tok = CharTokenizer.from_text(text)
    ids = LMData(tok.encode(text), b["block_size"], b["batch_size"]).train_batch(
        np.random.default_rng(seed))["input_ids"]
    built = []
    for r in results:
        model = build_model(r.pop("_args"), tok.vocab_size)
        opt = AdamW(param_groups_with_decay(model.named_parameters(), 0.1), lr=1e-3, betas=(0.9, 0.99))
        for _ in range(2):                                            # warm-up
            train_step(model, opt, model.parameters(), ids, 1.0)
        built.append((model, opt, []))
    for _ in range(rounds):
        for model, opt, times in built:
            for _ in range(steps):
                t0 = time.perf_counter()
                train_step(model, opt, model.parameters(), ids, 1.0)
                times.append(time.perf_counter() - t0)
    T = b["block_size"]
    for r, (model, opt, times) in zip(results, built):
        cache = model.init_kv_cache(1, T)                             # float32 buffers
        per_token = sum(int(a.nbytes) for kv in cache for a in kv) // T
        if per_token != kv_cache_memory(model.config, 1, T)["per_token"]:
            raise AssertionError(f"{r['label']}: init_kv_cache holds {per_token} bytes per token, "
                                 "minilm.costs.kv_cache_memory another number")
        cfg = r["config"]
        r.update(parameters=model.num_parameters(), step_ms=1e3 * statistics.median(times),
                 step_ms_quartiles=[1e3 * q for q in statistics.quantiles(times, n=4)] if len(times) > 1 else None,
                 kv_bytes_per_token=per_token, kv_heads=cfg.get("num_key_value_heads", cfg.get("n_head")),
                 mlp_width=cfg.get("intermediate_size") or cfg.get("n_inner") or 4 * b["n_embd"])
    base = results[0]
    rows = [[r["label"], f"{r['parameters']:,}", str(r["kv_heads"]), str(r["mlp_width"]), f"{r['val_loss']:.4f}",
             f"{r['step_ms']:.1f}", f"{r['kv_bytes_per_token']:,}",
             f"{r['kv_bytes_per_token'] / base['kv_bytes_per_token']:.3g}x"] for r in results]
    say(f"\n[arch] {config if isinstance(config, str) else 'custom'} size, {iters} steps, seed {seed}; "
        f"validation loss = mean of {eval_iters} fixed batches; step ms = median of {rounds} x {steps} "
        "interleaved steps")
    say(_table(rows, ["model", "parameters", "KV heads", "MLP width", f"val loss @{iters}",
                      "step ms", "KV cache B/token", f"vs {base['label']}"]))
    return {"config": b, "iters": iters, "eval_iters": eval_iters, "seed": seed, "rounds": rounds,
            "steps": steps, "models": results}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gpu"]:                       # its own options: minilm/bench/gpu.py
        from .gpu import main as gpu_main
        return gpu_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m minilm bench", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["step", "memory", "kvcache", "converge", "dist", "precision", "arch", "gpu", "all"])
    ap.add_argument("--config", choices=sorted(CONFIGS), default=None,
                    help="model size for step/memory (default: both, baby then wide)")
    ap.add_argument("--batch-size", type=int, default=None, help="override the config's batch size")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per round")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps before each round")
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved minilm/torch rounds (default 7 for baby, 3 for wide)")
    ap.add_argument("--malloc", choices=["default", "retain", "both"], default="both",
                    help="step/memory: glibc malloc as it comes, or told to keep freed memory "
                         "(MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_, set for both frameworks), or both")
    ap.add_argument("--torch-python", default=None,
                    help="a Python with torch: also run nanoGPT's model in PyTorch eager")
    ap.add_argument("--context", type=int, default=512, help="kvcache: prompt length")
    ap.add_argument("--new-tokens", type=int, default=32, help="kvcache: tokens to generate")
    ap.add_argument("--data-file", default=None, help="converge: a text file (e.g. tinyshakespeare)")
    ap.add_argument("--dataset", default=None, choices=["tinyshakespeare"],
                    help="converge: download (once, checksummed) tinyshakespeare")
    ap.add_argument("--iters", type=int, default=None, help="converge: iterations (default 2000)")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-iters", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1337, help="converge: initialisation and data seed")
    ap.add_argument("--seeds", default=None,
                    help="converge: comma-separated seeds, one run each, summarised as mean and SD")
    ap.add_argument("--torch-model", choices=sorted(TORCH_MODELS), default="gpt2",
                    help="converge: PyTorch runs GPT-2's block (biases, tanh GELU; what minilm "
                         "implements) or nanoGPT's default one (no biases, erf GELU)")
    ap.add_argument("--plot", default="runs/bench/converge_loss.png", help="converge: loss curve PNG")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--json", default=None, help="write every result to this JSON file")
    args = ap.parse_args(argv)

    results = {"machine": machine_info(args.torch_python)}
    m = results["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores; numpy {m['numpy']} ({m['blas']})"
          + (f"; torch {m['torch']}" if "torch" in m else ""))
    if m["OPENBLAS_CORETYPE"]:
        print(f"note: OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']} is set, so OpenBLAS uses that "
              "CPU's kernels instead of detecting this one (see BENCHMARKS.md)")
    configs = [args.config] if args.config else ["baby", "wide"]
    what = args.what
    mallocs = ["default", "retain"] if args.malloc == "both" else [args.malloc]
    if what in ("step", "all"):
        for c in configs:
            for mode in mallocs:
                rounds = args.rounds or (7 if c == "baby" else 3)
                results[f"step_{c}_{mode}"] = bench_step(c, args.steps, args.warmup, rounds,
                                                         args.batch_size, args.torch_python, mode)
                print()
    if what in ("memory", "all"):
        for c in configs:
            for mode in mallocs:
                results[f"memory_{c}_{mode}"] = bench_memory(c, 3, args.batch_size,
                                                             args.torch_python, mode)
                print()
    if what in ("kvcache", "all"):
        results["kvcache"] = bench_kvcache(args.context, args.new_tokens)
        print()
    if what == "converge" or (what == "all" and (args.data_file or args.dataset)):
        seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else [args.seed]
        runs = [bench_converge(args.data_file, args.dataset, args.iters, args.eval_every,
                               args.eval_iters, args.plot if i == 0 else None, seed,
                               not args.no_progress, args.torch_python, torch_model=args.torch_model)
                for i, seed in enumerate(seeds)]
        results["converge"] = runs[0] if len(runs) == 1 else summarise_seeds(runs)
    if what == "precision":                 # not in "all"
        for c in configs:
            results[f"precision_{c}"] = bench_precision(c, args.steps or 5, args.batch_size)
            print()
    if what == "dist":                      # not in "all": it launches mpiexec
        results["dist"] = bench_dist(config=args.config or "baby", steps=args.steps or 8)
    if what == "arch":                      # not in "all": four training runs
        results["arch"] = bench_arch(args.config or "baby", args.iters or 1000, eval_iters=args.eval_iters,
                                     seed=args.seed, data_file=args.data_file, rounds=args.rounds or 5,
                                     steps=args.steps or 10, progress=not args.no_progress)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
