"""Scaled dot-product attention, with causal and padding masks.

Shapes: B batch, H heads, T queries, S keys, D head width.
"""
import math

from .dropout import dropout_backward, dropout_forward
from .softmax import softmax_backward, softmax_forward


def causal_mask(xp, T, S=None):
    """(T, S) bool, True where query t may look at key s: s <= t + (S - T).

    With S > T (a KV cache holding S - T earlier positions), query t sits at position S - T + t.
    """
    S = T if S is None else S
    return xp.tril(xp.ones((T, S), dtype=bool), k=S - T)


def attention_forward(q, k, v, mask=None, dropout_p=0.0, rng=None):
    """q: (B, H, T, D), k: (B, H, S, D), v: (B, H, S, D),
    mask: bool broadcastable to (B, H, T, S), True = may attend, or None  ->  out: (B, H, T, D)

        scores = q k^T / sqrt(D)                           (B, H, T, S)
        P      = softmax(scores, masked)                   (B, H, T, S)
        out    = dropout(P) v                              (B, H, T, D)
    A query whose keys are all masked attends to nothing and outputs zeros.
    """
    D = q.shape[-1]
    scores = q @ k.swapaxes(-1, -2)                       # (B, H, T, S)
    scores *= 1.0 / math.sqrt(D)
    P, sm_cache = softmax_forward(scores, mask)           # (B, H, T, S)
    Pd, drop_cache = dropout_forward(P, dropout_p, rng)   # (B, H, T, S)
    out = Pd @ v                                          # (B, H, T, D)
    return out, (q, k, v, Pd, sm_cache, drop_cache)


def attention_backward(dout, cache):
    """Returns (dq, dk, dv); the forward read from the bottom up."""
    q, k, v, Pd, sm_cache, drop_cache = cache
    D = q.shape[-1]
    # undo: out = Pd v
    dPd = dout @ v.swapaxes(-1, -2)                       # (B, H, T, S)
    dv = Pd.swapaxes(-1, -2) @ dout                       # (B, H, S, D)
    # undo: Pd = dropout(P)
    dP = dropout_backward(dPd, drop_cache)
    # undo: P = softmax(scores)
    dscores = softmax_backward(dP, sm_cache)              # (B, H, T, S)
    # undo: scores = q k^T / sqrt(D)
    dscores *= 1.0 / math.sqrt(D)
    dq = dscores @ k                                      # (B, H, T, D)
    dk = dscores.swapaxes(-1, -2) @ q                     # (B, H, S, D)
    return dq, dk, dv


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
