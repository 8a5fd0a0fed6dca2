"""Scaled dot-product attention, with causal and padding masks.

Shapes: B batch, H heads, T queries, S keys, D head width.
"""
import math

from ..backend import get_xp
from .dropout import dropout_backward, dropout_forward
from .linear import half_matmul, is_half
from .softmax import row_sum, softmax_inplace


def causal_mask(xp, T, S=None):
    """(T, S) bool, True where query t may look at key s: s <= t + (S - T).

    With S > T (a KV cache holding S - T earlier positions), query t sits at position S - T + t.
    """
    S = T if S is None else S
    return xp.tril(xp.ones((T, S), dtype=bool), k=S - T)


def attention_forward(q, k, v, mask=None, dropout_p=0.0, rng=None):
    """q: (B, H, T, D), k: (B, H, S, D), v: (B, H, S, D),
    mask: bool broadcastable to (B, H, T, S), True = may attend, or None  ->  out: (B, H, T, D)

        scores = (q / sqrt(D)) k^T                         (B, H, T, S)
        P      = softmax(scores, masked)                   (B, H, T, S)
        out    = dropout(P) v                              (B, H, T, D)
    A query whose keys are all masked attends to nothing and outputs zeros.

    Two layout choices save work without changing the math: the 1/sqrt(D) scale goes on q
    (T x D numbers) rather than on the scores (T x S), and `out` is written head-minor, as
    a (B, T, H, D) array seen through a transpose, so that `merge_heads(out)` is a free
    reshape instead of a copy.
    """
    if is_half(q):
        return _attention_forward_half(q, k, v, mask, dropout_p, rng)
    xp = get_xp(q)
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.swapaxes(-1, -2)   # (B, H, T, S)
    P = softmax_inplace(scores, mask)                     # (B, H, T, S), in scores' memory
    Pd, drop_cache = dropout_forward(P, dropout_p, rng)   # (B, H, T, S)
    B, H, T, S = Pd.shape
    out = xp.empty((B, T, H, v.shape[-1]), dtype=Pd.dtype).transpose(0, 2, 1, 3)  # (B, H, T, D) view
    xp.matmul(Pd, v, out=out)                             # out = Pd v
    return out, (q, k, v, Pd, P, out, drop_cache)


def attention_backward(dout, cache, out=None):
    """Returns (dq, dk, dv); the forward read from the bottom up.

    `out`: optional (dq, dk, dv) arrays to write the gradients into (views into one
    buffer let a fused q/k/v projection skip a concatenation; see CausalSelfAttention).

    The softmax step uses the row sums sum_s dP_s P_s = sum_d dout_d out_d: both are
    sum_s sum_d dout_d v_sd Pd_s, since dP_s P_s = dPd_s Pd_s (dropout's mask is on both
    sides) and dPd_s = sum_d dout_d v_sd. That is a sum over D numbers per query instead
    of over S, and it needs no (T, S) temporary (FlashAttention's trick, Dao et al. 2022).
    """
    q, k, v, Pd, P, y, drop_cache = cache
    if is_half(q):
        return _attention_backward_half(dout, cache, out)
    xp = get_xp(dout)
    scale = 1.0 / math.sqrt(q.shape[-1])
    dq, dk, dv = out if out is not None else (None, None, None)
    # undo: out = Pd v
    dPd = dout @ v.swapaxes(-1, -2)                       # (B, H, T, S)
    dv = xp.matmul(Pd.swapaxes(-1, -2), dout, out=dv)     # (B, H, S, D)
    # undo: Pd = dropout(P)
    dP = dropout_backward(dPd, drop_cache)                # (B, H, T, S), ours to overwrite
    # undo: P = softmax(scores):  dscores = P * (dP - sum_s dP_s P_s)
    rowsum = row_sum(dout * y)                            # (B, H, T, 1) = sum_s dP_s P_s
    dscores = dP
    dscores -= rowsum
    dscores *= P                                          # (B, H, T, S)
    # undo: scores = (q / sqrt(D)) k^T
    dq = xp.matmul(dscores, k, out=dq)                    # (B, H, T, D)
    dq *= scale
    dk = xp.matmul(dscores.swapaxes(-1, -2), q, out=dk)   # (B, H, S, D)
    dk *= scale
    return dq, dk, dv


# -- float16 (mixed precision) ---------------------------------------------------------------
# The same steps with float16 q, k, v, as FlashAttention runs them on a GPU: the scores, the
# softmax and its backward in float32 (they never exist in float16 there either: they live
# in float32 registers), P stored in float16 for the P v product and the backward, every
# matrix product through `half_matmul` (float16 operands, float32 sums).

def _attention_forward_half(q, k, v, mask, dropout_p, rng):
    """attention_forward for float16 q, k, v; the same cache layout, P in float16."""
    xp = get_xp(q)
    B, H, T, D = q.shape
    scores = half_matmul(q, k.swapaxes(-1, -2), float32_out=True)   # (B, H, T, S) float32
    scores *= 1.0 / math.sqrt(D)                          # the scale in float32: exact or not, once
    P = softmax_inplace(scores, mask).astype(q.dtype)     # float32 softmax, P rounded to float16
    Pd, drop_cache = dropout_forward(P, dropout_p, rng)   # (B, H, T, S) float16
    out = xp.empty((B, T, H, v.shape[-1]), dtype=q.dtype).transpose(0, 2, 1, 3)  # (B, H, T, D) view
    out[...] = half_matmul(Pd, v)                         # out = Pd v
    return out, (q, k, v, Pd, P, out, drop_cache)


def _attention_backward_half(dout, cache, out=None):
    """attention_backward for a float16 cache: dP, the row sums and dscores in float32."""
    q, k, v, Pd, P, y, drop_cache = cache
    scale = 1.0 / math.sqrt(q.shape[-1])
    # undo: out = Pd v
    dPd = half_matmul(dout, v.swapaxes(-1, -2), float32_out=True)  # (B, H, T, S) float32
    dv = half_matmul(Pd.swapaxes(-1, -2), dout)           # (B, H, S, D)
    # undo: Pd = dropout(P)
    dP = dropout_backward(dPd, drop_cache)                # (B, H, T, S) float32
    # undo: P = softmax(scores):  dscores = P * (dP - sum_d dout_d out_d), in float32
    rowsum = row_sum(dout.astype("float32") * y)          # (B, H, T, 1) float32
    dscores = dP
    dscores -= rowsum
    dscores *= P                                          # (B, H, T, S) float32
    # undo: scores = (q k^T) / sqrt(D): dscores enters the products rounded to float16
    dq = half_matmul(dscores, k, float32_out=True)        # (B, H, T, D)
    dk = half_matmul(dscores.swapaxes(-1, -2), q, float32_out=True)   # (B, H, S, D)
    dq *= scale
    dk *= scale
    grads = (dq.astype(q.dtype), dk.astype(q.dtype), dv)
    if out is None:
        return grads
    for buffer, g in zip(out, grads):
        buffer[...] = g
    return out


# -- The textbook form ------------------------------------------------------------------------
# Chapter 3's attention, step by step. `attention_forward` / `attention_backward` above give
# the same numbers with less memory (scale on q, softmax in place, the softmax backward's row
# sums over D instead of S); tests/test_textbook_forms.py keeps the two in agreement.

def attention_forward_textbook(q, k, v, mask=None, dropout_p=0.0, rng=None):
    """scores = q k^T / sqrt(D);  P = softmax(scores, masked);  out = dropout(P) v."""
    from .softmax import softmax_forward_textbook
    scores = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])   # (B, H, T, S)
    P, _ = softmax_forward_textbook(scores, mask)         # (B, H, T, S)
    Pd, drop_cache = dropout_forward(P, dropout_p, rng)   # (B, H, T, S)
    return Pd @ v, (q, k, v, P, Pd, drop_cache)           # (B, H, T, D)


def attention_backward_textbook(dout, cache):
    """Returns (dq, dk, dv), undoing the forward's lines from the bottom up."""
    from .softmax import softmax_backward_textbook
    q, k, v, P, Pd, drop_cache = cache
    # undo: out = Pd v
    dPd = dout @ v.swapaxes(-1, -2)                       # (B, H, T, S)
    dv = Pd.swapaxes(-1, -2) @ dout                       # (B, H, S, D)
    # undo: Pd = dropout(P)
    dP = dropout_backward(dPd, drop_cache)                # (B, H, T, S)
    # undo: P = softmax(scores)
    dscores = softmax_backward_textbook(dP, P)            # (B, H, T, S)
    # undo: scores = q k^T / sqrt(D)
    scale = 1.0 / math.sqrt(q.shape[-1])
    return dscores @ k * scale, dscores.swapaxes(-1, -2) @ q * scale, dv


def split_heads(x, H):
    """(B, T, C) -> (B, H, T, D), D = C // H (a view when possible)."""
    B, T, C = x.shape
    return x.reshape(B, T, H, C // H).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, H, T, D) -> (B, T, H*D)"""
    B, H, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * D)


def padding_mask(attention_mask):
    """(B, S) of 1 = real token, 0 = padding  ->  (B, 1, 1, S) bool: which keys can be attended."""
    return (attention_mask != 0)[:, None, None, :]
