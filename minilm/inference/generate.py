"""Autoregressive decoding: greedy, temperature, top-k, top-p (nucleus), with or without a KV cache.

Without the cache every new token re-runs the whole prefix: O(T) work per token, O(T^2)
overall. With it, each step feeds only the new token and attends over stored keys and
values, and the tokens come out identical.
"""
import math
import numbers

import numpy as np  # sampling happens on the host: one (B, V) row per step

from ..backend import asarray, to_numpy
from ..models.checks import as_ids


def check_generate_args(max_new_tokens, do_sample=False, temperature=1.0, top_k=None, top_p=None,
                        seed=None):
    """TypeError / ValueError naming the argument and what it must be."""
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if not is_int(max_new_tokens) or max_new_tokens < 0:
        raise (ValueError if is_int(max_new_tokens) else TypeError)(
            f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
            or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if do_sample and temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (use do_sample=False for greedy)")
    if top_k is not None and (not is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 (or None), got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be a number in (0, 1] (or None), got {top_p!r}")
    if seed is not None and not is_int(seed):
        raise TypeError(f"seed must be an int or None, got {seed!r}")


def filter_logits(logits, temperature=1.0, top_k=None, top_p=None):
    """logits: (B, V) host array -> log-weights with filtered entries at -inf.

        temperature: z / T        top_k: keep the k largest        top_p: keep the smallest set
        of most likely tokens whose probabilities sum to >= p (always at least one token).
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature} "
                         "(use do_sample=False for greedy)")
    z = logits.astype(np.float64) / temperature
    V = z.shape[-1]
    if top_k is not None:
        if not 1 <= top_k:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        k = min(int(top_k), V)
        kth = np.sort(z, axis=-1)[:, V - k][:, None]                 # (B, 1) k-th largest
        z = np.where(z < kth, -np.inf, z)
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        order = np.argsort(-z, axis=-1, kind="stable")                # (B, V) most likely first
        zs = np.take_along_axis(z, order, axis=-1)
        p = np.exp(zs - zs[:, :1])
        p /= p.sum(axis=-1, keepdims=True)
        before = np.cumsum(p, axis=-1) - p                            # mass strictly before each token
        drop_sorted = before >= top_p                                 # the first token is always kept
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        z = np.where(drop, -np.inf, z)
    return z


def generate(model, input_ids, max_new_tokens, do_sample=False, temperature=1.0, top_k=None,
             top_p=None, use_cache=True, seed=None, eos_token_id=None, crop=False):
    """input_ids: (B, T0) -> (B, T0 + max_new_tokens) NumPy int64 array of prompt + continuation.

    Greedy (argmax) unless do_sample; sampling uses a NumPy Generator seeded with `seed`.
    When every sequence has produced `eos_token_id`, generation stops early (finished rows
    are padded with eos). The prompt plus new tokens must fit in n_positions, unless
    crop=True with use_cache=False, which keeps only the last n_positions tokens as context.
    """
    check_generate_args(max_new_tokens, do_sample, temperature, top_k, top_p, seed)
    ids = to_numpy(as_ids("input_ids", input_ids, model.config.vocab_size))
    B, T0 = ids.shape
    if T0 == 0:
        raise ValueError("generate needs a non-empty prompt")
    n_ctx = model.config.n_positions
    if T0 + max_new_tokens > n_ctx and not (crop and not use_cache):
        raise ValueError(f"prompt ({T0}) + max_new_tokens ({max_new_tokens}) exceeds the context "
                         f"n_positions={n_ctx}; shorten them, or pass use_cache=False, crop=True")
    with model.preserve_caches():
        return _generate(model, ids, max_new_tokens, do_sample, temperature, top_k, top_p,
                         use_cache, seed, eos_token_id)


def _generate(model, ids, max_new_tokens, do_sample, temperature, top_k, top_p, use_cache, seed,
              eos_token_id):
    B, T0 = ids.shape
    n_ctx = model.config.n_positions
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    out = np.empty((B, T0 + max_new_tokens), dtype=np.int64)
    out[:, :T0] = ids
    done = np.zeros(B, dtype=bool)
    try:
        if use_cache and max_new_tokens:
            cache = model.init_kv_cache(B, T0 + max_new_tokens)
            logits = model.forward_cached(asarray(ids), cache, 0)
        T = T0
        for _ in range(max_new_tokens):
            if not use_cache:
                ctx = out[:, max(0, T - n_ctx):T]
                logits = model.forward(ctx).logits[:, -1]
                model.clear_caches()
            if do_sample:                                             # on the host: one (B, V) row
                z = filter_logits(to_numpy(logits), temperature, top_k, top_p)
                p = np.exp(z - z.max(axis=-1, keepdims=True))
                p /= p.sum(axis=-1, keepdims=True)
                nxt = np.array([rng.choice(p.shape[-1], p=row) for row in p])
            else:                                                     # greedy: B ids cross, not B x V
                nxt = to_numpy(logits.argmax(axis=-1)).astype(np.int64, copy=False)
            if eos_token_id is not None:
                nxt = np.where(done, eos_token_id, nxt)
                done |= nxt == eos_token_id
            out[:, T] = nxt
            T += 1
            if eos_token_id is not None and done.all():
                return out[:, :T]
            if use_cache and T < T0 + max_new_tokens:
                logits = model.forward_cached(asarray(nxt[:, None]), cache, T - 1)
        return out
    finally:
        model.train(was_training)
