"""The PyTorch reference for `python -m minilm bench`: nanoGPT's model in eager mode.

Run by `minilm.bench` under a Python that has torch (``--torch-python PATH``); it imports
only torch, NumPy and the standard library (never minilm), so it can live in another
environment. It prints exactly one JSON line on stdout.

    python minilm/bench/torch_ref.py step   --config '{"n_layer": 4, ...}' --warmup 5 --steps 20
    python minilm/bench/torch_ref.py memory --config '{...}' --steps 3
    python minilm/bench/torch_ref.py converge --config '{...}' --data-file input.txt

The model is nanoGPT's GPT (model.py) written out again: learned positions, pre-LN blocks
with biases, GELU (tanh form here, to match GPT-2 and minilm), the LM head tied to wte,
attention through F.scaled_dot_product_attention(is_causal=True) as nanoGPT does whenever
torch has it, normal(0, 0.02) init with c_proj scaled by 1/sqrt(2 n_layer). The step is
nanoGPT's: forward, cross-entropy, backward, clip_grad_norm_(1.0), AdamW (for-each
default, fused=False; decay on 2-D parameters only), zero_grad(set_to_none=True).
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, C, H, bias=True):
        super().__init__()
        self.c_attn = nn.Linear(C, 3 * C, bias=bias)
        self.c_proj = nn.Linear(C, C, bias=bias)
        self.n_head = H

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)   # (B, H, T, D)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, C, H, bias=True, gelu="tanh"):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C, bias=bias)
        self.attn = CausalSelfAttention(C, H, bias)
        self.ln_2 = nn.LayerNorm(C, bias=bias)
        self.c_fc = nn.Linear(C, 4 * C, bias=bias)
        self.c_proj = nn.Linear(4 * C, C, bias=bias)
        self.gelu = gelu

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate=self.gelu))


class GPT(nn.Module):
    """bias=False, gelu="none" is nanoGPT's default model exactly (its train.py has
    bias = False, and nn.GELU() is the erf form); the benchmarks default to GPT-2's choices,
    which minilm implements."""

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, bias=True, gelu="tanh"):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList([Block(n_embd, n_head, bias, gelu) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight                  # tied, as nanoGPT
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids):                                    # (B, T) -> logits (B, T, V)
        B, T = ids.shape
        x = self.wte(ids) + self.wpe(torch.arange(T, device=ids.device))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def build(cfg, seed=0):
    torch.manual_seed(seed)
    model = GPT(cfg["vocab_size"], cfg["block_size"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"])
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), fused=False)
    rng = np.random.default_rng(seed)
    # the same batch shapes minilm trains on: a window of block_size tokens, labels shifted
    # by one inside it (block_size - 1 predictions per row)
    ids = torch.from_numpy(rng.integers(0, cfg["vocab_size"], (cfg["batch_size"], cfg["block_size"])))
    return model, opt, ids


def train_step(model, opt, ids, clip):
    """One nanoGPT iteration. Labels are the window shifted by one, as minilm's (Hugging
    Face) semantics: position t predicts ids[t + 1], the last position has no target."""
    logits = model(ids)                                            # (B, T, V)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def converge(cfg, data_file, iters, eval_every, eval_iters, seed):
    """nanoGPT's train.py loop on a char-level text: 90/10 split, (x, y) windows of
    block_size with y = x shifted by one, cosine schedule with warm-up, estimate_loss on
    `eval_iters` random val batches. Returns the val-loss curve."""
    with open(data_file, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], dtype=np.int64)
    n = int(0.9 * len(data))
    splits = {"train": torch.from_numpy(data[:n]), "val": torch.from_numpy(data[n:])}
    cfg = dict(cfg, vocab_size=len(chars))
    torch.manual_seed(seed)
    model = GPT(cfg["vocab_size"], cfg["block_size"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"],
                cfg.get("bias", True), cfg.get("gelu", "tanh"))
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), fused=False)
    T, B = cfg["block_size"], cfg["batch_size"]

    def get_batch(split):
        d = splits[split]
        ix = torch.randint(len(d) - T, (B,))
        return torch.stack([d[i:i + T] for i in ix]), torch.stack([d[i + 1:i + 1 + T] for i in ix])

    def get_lr(it):
        warmup, lr, min_lr = cfg["warmup"], cfg["lr"], cfg["min_lr"]
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        if it > iters:
            return min_lr
        coeff = 0.5 * (1.0 + math.cos(math.pi * (it - warmup) / (iters - warmup)))
        return min_lr + coeff * (lr - min_lr)

    @torch.no_grad()
    def estimate_loss():
        model.eval()
        losses = []
        for _ in range(eval_iters):
            x, y = get_batch("val")
            logits = model(x)
            losses.append(F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1)).item())
        model.train()
        return sum(losses) / len(losses)

    curve, t0 = [], time.perf_counter()
    for it in range(iters + 1):
        if it % eval_every == 0 and it > 0:
            curve.append((it, estimate_loss()))
            print(f"step {it}: val loss {curve[-1][1]:.4f}", file=sys.stderr)
        if it == iters:
            break
        for group in opt.param_groups:
            group["lr"] = get_lr(it)
        x, y = get_batch("train")
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
    wall = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():                  # the spread of single-batch losses over fresh batches
        per_batch = []
        for _ in range(eval_iters):
            x, y = get_batch("val")
            logits = model(x)
            per_batch.append(F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1)).item())
    return {"framework": "torch", "val_curve": curve, "val_loss": curve[-1][1],
            "wall_s": wall, "seed": seed, "bias": cfg.get("bias", True),
            "gelu": cfg.get("gelu", "tanh"), "val_batch_loss_std": float(np.std(per_batch, ddof=1))}


def peak_rss_mb():
    """ru_maxrss is in KiB on Linux."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["step", "memory", "converge"])
    ap.add_argument("--config", required=True, help="JSON dict: vocab_size block_size n_layer "
                    "n_head n_embd batch_size lr betas weight_decay clip")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--data-file", help="converge: the text to train on")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-iters", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args(argv)
    cfg = json.loads(args.config)
    torch.set_num_threads(args.threads)

    if args.what == "converge":
        result = converge(cfg, args.data_file, args.iters, args.eval_every, args.eval_iters, args.seed)
    elif args.what == "step":
        model, opt, ids = build(cfg)
        for _ in range(args.warmup):
            train_step(model, opt, ids, cfg["clip"])
        times, cpu_times, loss = [], [], None
        for _ in range(args.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            loss = train_step(model, opt, ids, cfg["clip"])
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
        result = {"framework": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "times_s": times, "cpu_times_s": cpu_times, "median_s": statistics.median(times),
                  "loss": loss}
    else:
        a = torch.ones(64, 64, requires_grad=True)
        (a @ a).sum().backward()                     # start the math libraries and autograd first
        rss0 = peak_rss_mb()                         # interpreter + torch imported and started
        model, opt, ids = build(cfg)
        for _ in range(args.steps):
            train_step(model, opt, ids, cfg["clip"])
        rss1 = peak_rss_mb()
        n_params = sum(p.numel() for p in model.parameters())
        result = {"framework": "torch", "torch": torch.__version__, "baseline_rss_mb": rss0,
                  "peak_rss_mb": rss1, "peak_rss_growth_mb": rss1 - rss0, "n_params": n_params}
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
