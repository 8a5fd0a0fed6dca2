"""GPU benchmarks: `python -m minilm bench gpu` (needs CuPy and a CUDA device; torch optional).

One training step (forward, loss, backward, clip 1.0, AdamW), timed after warm-up with the
device synchronised around each step, for three sizes:

    baby   nanoGPT's CPU recipe  (L=4,  H=4,  C=128, T=64,   B=12, V=65)
    wide   6 x 384 at block 256  (L=6,  H=6,  C=384, T=256,  B=12, V=65)
    gpt2   GPT-2 small, 124M     (L=12, H=12, C=768, T=1024, B=8,  V=50257)

each in float32 and in float16 mixed precision (minilm: Trainer(precision="fp16"), float32
master weights and dynamic loss scaling; PyTorch: torch.autocast(float16) + GradScaler), for
minilm on CuPy and, when torch with CUDA is importable in the same Python, for PyTorch eager
on the same GPU (nanoGPT's model from minilm/bench/torch_ref.py). Then KV-cache decoding
(bench_kvcache on the CuPy backend). Reported: median ms/step, tokens/s, and the peak of
device memory each framework's caching allocator held (reserved, not only in use: CuPy's
pool total_bytes, torch.cuda.max_memory_reserved) during the steps.

The numbers are for the record in BENCHMARKS.md; nothing here is asserted.
"""
import json
import statistics
import time

import numpy as np

from .suite import CONFIGS, GPT2_SMALL, RECIPE, build_minilm, random_batch

SIZES = dict(CONFIGS, gpt2=dict(GPT2_SMALL, block_size=1024, batch_size=8))


def _config(size):
    """The suite's recipe (AdamW, clip 1.0, no dropout) at this size; GPT-2's vocabulary for
    the 124M model (its size names one), the char-level 65 otherwise."""
    return dict(RECIPE, **SIZES[size], name=size)


def _median_ms(times):
    return 1e3 * statistics.median(times)


def minilm_step(size, precision, warmup, steps):
    """minilm on CuPy: {median_ms, tokens_per_s, peak_mb, loss}."""
    import cupy

    from ..backend import set_backend
    from ..training.trainer import Trainer
    set_backend("cupy")
    cfg = _config(size)
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    model, opt = build_minilm(cfg)
    ids = random_batch(cfg)
    batch = {"input_ids": ids, "labels": ids}
    trainer = Trainer(model, opt, [batch], max_steps=1, grad_clip=cfg["clip"], progress=False,
                      precision=precision)
    sync = cupy.cuda.Device().synchronize
    for _ in range(warmup):
        trainer.train_step(batch)
    sync()
    times, peak, loss = [], pool.total_bytes(), None
    for _ in range(steps):
        t0 = time.perf_counter()
        loss, _ = trainer.train_step(batch)
        sync()
        times.append(time.perf_counter() - t0)
        peak = max(peak, pool.total_bytes())
    tokens = cfg["batch_size"] * cfg["block_size"]
    ms = _median_ms(times)
    result = {"framework": "minilm (CuPy)", "size": size, "precision": precision, "median_ms": ms,
              "tokens_per_s": tokens / (ms / 1e3), "peak_mb": peak / 2**20, "loss": float(loss)}
    del trainer, model, opt
    pool.free_all_blocks()
    return result


def torch_step(size, precision, warmup, steps):
    """PyTorch eager on the same GPU (nanoGPT's model, torch.optim.AdamW)."""
    import torch
    import torch.nn.functional as F

    from . import torch_ref
    cfg = _config(size)
    model, opt, ids = torch_ref.build(cfg)      # AdamW with decay on matrices only, as minilm's
    model, ids = model.cuda(), ids.cuda()         # in place: the optimiser keeps its parameters
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    def step():
        with torch.autocast("cuda", dtype=torch.float16, enabled=precision == "fp16"):
            logits = model(ids)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                                   ids[:, 1:].reshape(-1))
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), RECIPE["clip"])
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss.item()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times, loss = [], None
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    tokens = cfg["batch_size"] * cfg["block_size"]
    ms = _median_ms(times)
    result = {"framework": f"PyTorch {torch.__version__} eager", "size": size, "precision": precision,
              "median_ms": ms, "tokens_per_s": tokens / (ms / 1e3),
              "peak_mb": torch.cuda.max_memory_reserved() / 2**20, "loss": loss}
    return result                                   # the caller empties torch's cache


def _torch_cuda():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def run(sizes=("baby", "wide", "gpt2"), precisions=("fp32", "fp16"), json_path=None,
        kvcache=("baby", "gpt2")):
    """The step table for `sizes` x `precisions`, then KV-cache decoding at each width in
    `kvcache` (empty: none)."""
    from ..backend import get_backend, set_backend
    before = get_backend()
    try:
        return _run(sizes, precisions, json_path, kvcache)
    finally:
        set_backend(before)


def _run(sizes, precisions, json_path, kvcache):
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    print(f"[gpu] {gpu}, CuPy {cupy.__version__}, NumPy {np.__version__}", flush=True)
    rows = []
    use_torch = _torch_cuda()
    for size in sizes:
        warmup, steps = (3, 10) if size == "gpt2" else (5, 30)
        for precision in precisions:
            for fn in ([minilm_step, torch_step] if use_torch else [minilm_step]):
                try:
                    r = fn(size, precision, warmup, steps)
                except Exception as e:                     # record and go on: one table for all
                    r = {"framework": fn.__name__, "size": size, "precision": precision,
                         "error": f"{type(e).__name__}: {e}"[:300]}
                rows.append(r)
                print(json.dumps(r), flush=True)
                if use_torch:
                    import torch
                    torch.cuda.empty_cache()
    print(f"\n{'size':6} {'precision':9} {'framework':28} {'ms/step':>9} {'tokens/s':>10} {'peak MB':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['size']:6} {r['precision']:9} {r['framework']:28} error: {r['error'][:80]}")
        else:
            print(f"{r['size']:6} {r['precision']:9} {r['framework']:28} {r['median_ms']:9.1f} "
                  f"{r['tokens_per_s']:10.0f} {r['peak_mb']:9.0f}")
    out = {"gpu": gpu, "cupy": cupy.__version__, "steps": rows}
    if kvcache:
        from ..backend import set_backend
        from .suite import bench_kvcache
        set_backend("cupy")
        out["kvcache"] = []
        for width in kvcache:
            try:
                r = bench_kvcache(context=512, new_tokens=64, n_positions=1024, verbose=True,
                                  width=width)
            except Exception as e:
                r = {"width": width, "error": f"{type(e).__name__}: {e}"[:300]}
                print("[kvcache] error:", r["error"], flush=True)
            out["kvcache"].append(r)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(out, f, indent=1, default=str)
    return out


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python -m minilm bench gpu", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="baby,wide,gpt2")
    ap.add_argument("--precisions", default="fp32,fp16")
    ap.add_argument("--kvcache", default="baby,gpt2",
                    help="widths for KV-cache decoding (baby, gpt2), comma-separated; '' for none")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from ..backend import cupy_available
    ok, why = cupy_available()
    if not ok:
        raise SystemExit(f"python -m minilm bench gpu needs CuPy and a CUDA device: {why}")
    run(tuple(args.sizes.split(",")), tuple(args.precisions.split(",")), args.json,
        tuple(w for w in args.kvcache.split(",") if w))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
